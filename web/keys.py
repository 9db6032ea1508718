"""API keys: the file that stores them (hashes only) and the check of a presented key.

A key is ``isk_`` and 43 URL-safe characters (``secrets.token_urlsafe(32)``: 256
random bits), shown once when it is made.  The file keeps, per key, its name,
scope (``read`` or ``write``), creation time and the sha256 of the key: enough
to check a key (a fast hash is right for a random 256-bit token; there is no
password to guess), never enough to use one.  The file lives outside the index
folder (default ``$IMGSEARCH_KEYS``, else ``$XDG_CONFIG_HOME/imgsearch/keys.json``,
else ``~/.config/imgsearch/keys.json``), is written atomically with mode 0600 in
a 0700 folder, under a lock so two ``imgsearch keys`` commands never lose each
other's change.  A server re-reads it when it changes (one stat per check), so a
revoked key stops working at once, without a restart.
"""

from __future__ import annotations

import fcntl
import hashlib
import hmac
import json
import os
import re
import secrets
import tempfile
import threading
import time
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from imgsearch.search.errors import InvalidInputError, NotFoundError, quote

PREFIX = "isk_"
SCOPES = ("read", "write")
NAME_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")
FORMAT = 1


def default_keys_file() -> Path:
    if os.environ.get("IMGSEARCH_KEYS"):
        return Path(os.environ["IMGSEARCH_KEYS"]).expanduser()
    config = os.environ.get("XDG_CONFIG_HOME") or os.path.join(os.path.expanduser("~"), ".config")
    return Path(config) / "imgsearch" / "keys.json"


def digest(key: str) -> str:
    return hashlib.sha256(key.encode("utf-8", "surrogatepass")).hexdigest()


@dataclass(frozen=True)
class ApiKey:
    name: str
    scope: str
    created: str
    sha256: str

    @property
    def fingerprint(self) -> str:
        """A short handle for people (the hash's first 12 hex digits), never the key."""
        return self.sha256[:12]

    def allows(self, scope: str) -> bool:
        return self.scope == "write" or scope == "read"


class KeyStore:
    """The keys file at ``path``: create, list, revoke, and check a presented key (re-read when the file changes)."""

    def __init__(self, path: str | os.PathLike | None = None):
        self.path = Path(path).expanduser() if path else default_keys_file()
        self._seen = None  # (inode, mtime_ns, size) of the file last read
        self._keys: tuple[ApiKey, ...] = ()
        self._lock = threading.Lock()

    # ------------------------------------------------------------ reading
    def keys(self) -> tuple[ApiKey, ...]:
        """The keys as the file holds them now (re-read if it changed); InvalidInputError if it is damaged."""
        try:
            st = os.stat(self.path)
        except FileNotFoundError:
            with self._lock:
                self._seen, self._keys = None, ()
            return ()
        seen = (st.st_ino, st.st_mtime_ns, st.st_size)
        with self._lock:
            if seen != self._seen:
                self._keys = self._read()
                self._seen = seen
            return self._keys

    def _read(self) -> tuple[ApiKey, ...]:
        try:
            data = json.loads(self.path.read_text(encoding="utf-8"))
            keys = tuple(ApiKey(str(k["name"]), str(k["scope"]), str(k["created"]), str(k["sha256"]))
                         for k in data["keys"])
        except (OSError, ValueError, KeyError, TypeError) as exc:
            raise InvalidInputError(f"the keys file {self.path} is damaged ({exc.__class__.__name__}: "
                                    f"{str(exc)[:100]}): fix it, or move it away and create the keys again") from None
        if any(k.scope not in SCOPES or len(k.sha256) != 64 for k in keys):
            raise InvalidInputError(f"the keys file {self.path} is damaged (a key with an unknown scope or hash): "
                                    "fix it, or move it away and create the keys again")
        return keys

    def check(self, presented: str) -> ApiKey | None:
        """The key ``presented`` is, or None: compared in constant time with every stored hash."""
        wanted = digest(presented)
        found = None
        for key in self.keys():
            if hmac.compare_digest(wanted, key.sha256):  # every key compared: the time tells nothing
                found = key
        return found

    # ------------------------------------------------------------ writing
    def create(self, scope: str, name: str | None = None) -> tuple[str, ApiKey]:
        """(the new key, shown once; its record).  ``name`` defaults to ``SCOPE-FINGERPRINT``."""
        if scope not in SCOPES:
            raise InvalidInputError(f"scope must be read or write, got {quote(scope)}")
        if name is not None and (not isinstance(name, str) or not NAME_PATTERN.match(name)):
            raise InvalidInputError(f"a key's name is letters, digits, '.', '_' or '-' (at most 64, starting with a "
                                    f"letter or digit), got {quote(name)}")
        token = PREFIX + secrets.token_urlsafe(32)
        record = ApiKey(name or f"{scope}-{digest(token)[:8]}", scope,
                        time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), digest(token))
        with self._locked():
            keys = self._read() if self.path.exists() else ()
            if any(k.name == record.name for k in keys):
                raise InvalidInputError(f"there is a key named {quote(record.name)} already: choose another --name, "
                                        "or revoke it first")
            self._write((*keys, record))
        return token, record

    def revoke(self, name: str) -> ApiKey:
        with self._locked():
            keys = self._read() if self.path.exists() else ()
            gone = [k for k in keys if k.name == name]
            if not gone:
                raise NotFoundError(f"no key named {quote(name)} in {self.path} (keys: "
                                    f"{', '.join(k.name for k in keys) or 'none'})")
            self._write(tuple(k for k in keys if k.name != name))
        return gone[0]

    @contextmanager
    def _locked(self):
        self.path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        fd = os.open(self.path.parent / f".{self.path.name}.lock", os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            yield
        finally:
            os.close(fd)  # releases the lock

    def _write(self, keys: tuple[ApiKey, ...]) -> None:
        data = {"format": FORMAT, "keys": [{"name": k.name, "scope": k.scope, "created": k.created,
                                            "sha256": k.sha256} for k in keys]}
        fd, tmp = tempfile.mkstemp(prefix=f".{self.path.name}.", dir=self.path.parent)  # mode 0600
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as f:
                json.dump(data, f, indent=1)
                f.flush()
                os.fsync(f.fileno())
            os.chmod(tmp, 0o600)
            os.replace(tmp, self.path)
        except BaseException:
            if os.path.exists(tmp):
                os.unlink(tmp)
            raise
        folder = os.open(self.path.parent, os.O_RDONLY)
        try:
            os.fsync(folder)
        finally:
            os.close(folder)

"""A search engine that follows its index folder: new versions are picked up without a restart.

The indexer publishes a version by replacing ``manifest.json`` last (see
``indexer/folder/store.py``).  ``ReloadingEngine`` holds one ``SearchEngine``
(one version) and stats the manifest on every ``current()`` (one stat).  When
it was replaced by the next version, a background thread (started at most
every ``interval`` seconds) opens it completely (shards' metadata, FAISS index,
checks) while requests go on being answered by the held one, whose files the
store keeps until the version after that is published; then the reference is
swapped in one assignment.

When the held version is more than one version behind (two publishes while
the server was idle, or faster than it could open them), its files may be
gone: ``current()`` then opens the newest version in the calling thread before
answering (threads asking meanwhile wait for that one opening and share it).
A request that took its engine just before such publishes and then finds a
file gone is answered by the newest version too (``SearchEngine`` asks this
engine to open it, once).  So no request fails because files went away,
whatever the rhythm of publishing.

A version that fails to open (damaged, say) is logged and not retried until
the manifest changes again; the held version keeps being served.
"""

from __future__ import annotations

import logging
import threading
import time
from typing import Any, Protocol

from imgsearch.indexer.errors import InvalidInputError


class SearchEngine(Protocol):
    """What following a folder needs of one version's engine (search/engine.py's ``SearchEngine``, which
    opens a ``ReloadingEngine`` with ``open(auto_reload=True)``: the engine imports this module, not the reverse)."""

    store: Any
    manifest: dict
    _signature: Any
    _reopen: Any

    @property
    def generation(self) -> int: ...

    def changed(self) -> bool: ...

    def reload(self) -> "SearchEngine": ...

log = logging.getLogger(__name__)


class ReloadingEngine:
    """Answers like a ``SearchEngine``, always from the newest version that opened cleanly.

    ``current()`` returns the ``SearchEngine`` of one version: take it once per
    request (or per batch of calls that must agree) and use it throughout.  Any
    other attribute is looked up on ``current()``, so ``engine.search_image(...)``
    works as on a ``SearchEngine``, each call answered by one version.
    ``interval``: seconds between starting background reloads (0: on the first
    call that sees a new version); ``background=False`` opens new versions in the
    calling thread (the call that notices a new version waits for it).
    """

    def __init__(self, engine: SearchEngine, interval: float = 1.0, *, background: bool = True):
        if interval < 0:
            raise InvalidInputError(f"interval must be >= 0 seconds, got {interval}")
        self._engine = engine
        engine._reopen = self._catch_up  # a request whose version lost its files gets the newest
        self.interval = float(interval)
        self.background = background
        self._next_check = time.monotonic() + self.interval
        self._loading = threading.Lock()  # one reload at a time
        self._failed_signature = None  # a manifest that failed to open: not retried until it changes
        self._published: tuple | None = None  # (manifest signature, its generation): read once per publish
        self.reloads = 0  # versions swapped in
        self.last_error: Exception | None = None

    def current(self) -> SearchEngine:
        """The engine of the newest version whose files are all there.

        The one held, if the version published now is it or the next one (whose
        opening is then started, at most every ``interval`` seconds); otherwise
        the newest, opened before returning.
        """
        engine = self._engine
        signature = engine.store.manifest_signature()
        if signature is None or signature == engine._signature or signature == self._failed_signature:
            return engine
        if self._generation_of(signature) > engine.generation + 1:
            return self._catch_up(engine)  # the held version's files may be gone: not one answer more from it
        now = time.monotonic()
        if now >= self._next_check:
            self._next_check = now + self.interval
            self._check()
        return engine

    def reload(self) -> SearchEngine:
        """Open the version published now in this thread and swap it in; returns it.

        Raises ``IndexFormatError`` (and keeps the old version) if it cannot be opened.
        """
        with self._loading:
            self._swap(self._engine.reload())
        return self._engine

    def _generation_of(self, signature) -> int:
        """The generation of the manifest published now (-1 if it cannot be read: the reload will say why)."""
        if self._published is None or self._published[0] != signature:
            try:
                generation = int(self._engine.store.read_manifest().get("generation", 0))
            except Exception:  # noqa: BLE001 - damaged or mid-replace: opening it reports the reason
                generation = -1
            self._published = (signature, generation)
        return self._published[1]

    def _catch_up(self, seen: SearchEngine) -> SearchEngine:
        """The newest version, opened in this thread unless another thread did since ``seen`` was taken.

        Threads that get here together wait for one opening and share it; a
        background reload under way is waited for, not repeated.
        """
        with self._loading:
            engine = self._engine
            if engine is seen or engine.changed():
                signature = engine.store.manifest_signature()
                try:
                    self._swap(engine.reload())
                except Exception as exc:  # noqa: BLE001 - keep the held version, say why
                    self._failed(signature, exc)
            return self._engine

    def _check(self) -> None:
        engine = self._engine
        signature = engine.store.manifest_signature()
        if signature == engine._signature or signature == self._failed_signature or signature is None:
            return
        if not self._loading.acquire(blocking=False):
            return  # already opening it
        if not self.background:
            self._load(signature)
            return
        threading.Thread(target=self._load, args=(signature,), name="index-reload", daemon=True).start()

    def _load(self, signature) -> None:
        """Open the new version and swap it in; runs holding ``_loading``, releases it."""
        try:
            self._swap(self._engine.reload())
        except Exception as exc:  # noqa: BLE001 - any failure: keep serving the old version, say why
            self._failed(signature, exc)
        finally:
            self._loading.release()

    def _failed(self, signature, exc: Exception) -> None:
        self.last_error = exc
        self._failed_signature = signature
        log.error("%s: keeping version %d, the newly published version cannot be opened: %s",
                  self._engine.store.root, self._engine.generation, exc)

    def _swap(self, new: SearchEngine) -> None:
        if new is not self._engine:
            new._reopen = self._catch_up
            self._engine = new  # one reference: a request sees the old version or the new, never a mix
            self.reloads += 1
            self.last_error = None
            self._failed_signature = None

    def wait_idle(self, timeout: float = 60.0) -> bool:
        """Wait until no reload is under way; False on timeout."""
        if not self._loading.acquire(timeout=timeout):
            return False
        self._loading.release()
        return True

    # ------------------------------------------------------------ a SearchEngine's face
    def __getattr__(self, name):
        if name.startswith("_"):  # never forward private state (or recurse before __init__ ran)
            raise AttributeError(name)
        return getattr(self.current(), name)

    def __len__(self) -> int:
        return len(self.current())

    def __repr__(self) -> str:
        return f"ReloadingEngine({self._engine.store.root}, version {self._engine.generation})"

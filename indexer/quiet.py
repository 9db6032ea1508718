"""Keep the libraries' own output off the terminal: what people see is what imgsearch writes.

TensorFlow, absl, XLA and the TFLite runtime write from C++ straight to the process's file
descriptors 1 and 2 (``cuInit`` errors, "Created TensorFlow Lite XNNPACK delegate"), and the
converter prints and warns from Python ("Saved artifact at ...", ``TensorSpec`` dumps,
quantisation warnings).  Environment variables silence part of it, and only before TensorFlow is
imported (``quiet_environment``); the rest is caught where it happens: ``captured(log_file)``
points descriptors 1 and 2 at a temporary file around a call (preparing a model, creating an
interpreter), appends what was caught to ``log_file`` and, when the call fails, writes it to
stderr as well: an error message is never lost.  ``--verbose`` (``IMGSEARCH_VERBOSE=1``, set by
the root command and inherited by worker processes) captures nothing: everything is shown.

While a capture is on, ``terminal()`` is the stderr people see (a duplicate of the real
descriptor 2), for the lines imgsearch writes itself (``progress.step``).
"""

from __future__ import annotations

import os
import sys
import tempfile
import threading
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator, TextIO

VERBOSE_ENV = "IMGSEARCH_VERBOSE"
LOG_LIMIT = 1 << 20  # bytes of libraries.log before it is started again (the previous one kept as .1)
_lock = threading.RLock()
_terminal: TextIO | None = None


def verbose() -> bool:
    """Whether the libraries' output is shown (``imgsearch --verbose``)."""
    return os.environ.get(VERBOSE_ENV, "") not in ("", "0")


def quiet_environment(show: bool | None = None) -> None:
    """Set the variables TensorFlow and absl read when imported: only errors unless ``show`` (None: ``verbose()``).

    ``show`` is passed on to worker processes through ``IMGSEARCH_VERBOSE``.  A variable the user set is kept.
    """
    if show is not None:
        os.environ[VERBOSE_ENV] = "1" if show else "0"
    show = verbose()
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "0" if show else "2")


def libraries_log(cache_dir: Path) -> Path:
    """Where what the libraries print while a model is prepared or loaded is kept: in the cache, beside the models."""
    return Path(cache_dir) / "models" / "libraries.log"


def terminal() -> TextIO:
    """The stream for lines imgsearch writes for people: sys.stderr, or the real stderr during a capture."""
    return _terminal if _terminal is not None else sys.stderr


def _flush() -> None:
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (AttributeError, ValueError, OSError):
            pass


@contextmanager
def captured(log_file: Path | None, what: str) -> Iterator[None]:
    """Catch what the libraries write to descriptors 1 and 2 during the block (see the module's docstring).

    ``what`` heads the caught text in ``log_file``.  A capture inside another one (or another thread's),
    and any under ``--verbose``, catches nothing more: the outer one has it.
    """
    global _terminal
    with _lock:
        if verbose() or _terminal is not None:
            owner = False
        else:
            owner = True
            _flush()
            saved_out, saved_err = os.dup(1), os.dup(2)
            sink = tempfile.TemporaryFile()
            os.dup2(sink.fileno(), 1)
            os.dup2(sink.fileno(), 2)
            _terminal = os.fdopen(os.dup(saved_err), "w", buffering=1, errors="replace")
            # Python's own streams too, where they are not descriptors 1 and 2 (a notebook, a test's capture)
            streams = sys.stdout, sys.stderr
            ours = sys.stdout = sys.stderr = os.fdopen(os.dup(sink.fileno()), "w", buffering=1, errors="replace")
    if not owner:
        yield
        return
    failed = False
    try:
        yield
    except BaseException:
        failed = True
        raise
    finally:
        with _lock:
            _flush()
            ours.close()
            sys.stdout, sys.stderr = streams
            os.dup2(saved_out, 1)
            os.dup2(saved_err, 2)
            os.close(saved_out)
            os.close(saved_err)
            _terminal.close()
            _terminal = None
        sink.seek(0)
        text = sink.read().decode("utf-8", errors="replace")
        sink.close()
        _keep(text, log_file, what, failed)


def _keep(text: str, log_file: Path | None, what: str, failed: bool) -> None:
    kept = None
    if text.strip() and log_file is not None:
        try:
            Path(log_file).parent.mkdir(parents=True, exist_ok=True)
            if Path(log_file).is_file() and Path(log_file).stat().st_size > LOG_LIMIT:
                os.replace(log_file, f"{log_file}.1")  # the one before is kept, the one before that goes
            with open(log_file, "a", encoding="utf-8") as out:
                out.write(f"--- {time.strftime('%Y-%m-%dT%H:%M:%S%z')} {what}{' (failed)' if failed else ''}\n{text}")
                if not text.endswith("\n"):
                    out.write("\n")
            kept = log_file
        except OSError:
            pass
    if failed and text.strip():  # never lose an error message: the libraries' words come with the error
        sys.stderr.write(text if text.endswith("\n") else text + "\n")
        if kept is not None:
            sys.stderr.write(f"(the output above, of {what}, is also kept in {kept})\n")
        sys.stderr.flush()

"""Worker processes that end with the process that started them.

A pool's workers wait on their task queue; when the process that started them is killed outright (SIGKILL,
the OOM killer), nothing runs to tell them, and as each holds the queue's writing end too, the queue never
ends: they would wait, holding their memory, for ever.  A watching thread in each worker waits on
multiprocessing's parent sentinel (a pipe only the parent holds open) and ends the worker when it closes.
"""

from __future__ import annotations

import multiprocessing
import multiprocessing.connection
import os
import threading


def exit_with_parent() -> None:
    """In a worker started by ``multiprocessing`` (spawn): end this process when its parent is gone."""
    parent = multiprocessing.parent_process()
    if parent is None or parent.sentinel is None:
        return

    def watch() -> None:
        multiprocessing.connection.wait([parent.sentinel])
        os._exit(1)  # the parent is gone: no one is left to take a result

    threading.Thread(target=watch, name="exit-with-parent", daemon=True).start()

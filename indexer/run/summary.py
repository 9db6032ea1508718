"""What an indexing run did, counted as it goes and printed at the end.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from imgsearch.indexer.folder.texts import display_text


LONG_STARTUP = 5.0  # seconds of start-up the printed rate leaves out (a warm start: 1-3 s)


@dataclass
class IndexSummary:
    index_dir: str
    found: int = 0  # image files found under the sources
    added: int = 0  # newly embedded and indexed
    already_indexed: int = 0  # same content (sha256) already in the index
    changed: int = 0  # indexed path whose content changed: re-embedded, same id
    removed: int = 0  # with sync: indexed files that are gone
    duplicates: int = 0  # same content as another file of this run
    skipped: list[tuple[str, str]] = field(default_factory=list)  # (path, reason)
    total: int = 0  # images in the index after the run
    seconds: float = 0.0
    startup_seconds: float = 0.0  # until the first batch was embedded (imports, model, workers)
    refreshed: int = 0  # with refresh_metadata: indexed images whose file metadata was captured again
    notes: list[str] = field(default_factory=list)  # lines about the run itself (run/placement.py)

    @property
    def steady_rate(self) -> float:
        """Images per second once running: what a long run approaches."""
        busy = self.seconds - self.startup_seconds
        return self.added / busy if busy > 0 else 0.0

    def rate_text(self) -> str:
        """Images per second as printed: over the whole run, or, when a long start-up (a model prepared for
        this CPU the first time) took most of it, the rate once running, with the start-up said apart."""
        if self.added and self.startup_seconds >= LONG_STARTUP and self.startup_seconds > 0.2 * self.seconds:
            return f"{self.steady_rate:.1f} img/s after {self.startup_seconds:.1f}s of start-up"
        return f"{self.added / self.seconds if self.seconds else 0.0:.1f} img/s"

    def lines(self) -> list[str]:
        out = [
            f"indexed {self.added} new images in {self.seconds:.1f}s ({self.rate_text()}); "
            f"{self.already_indexed} already indexed, {self.changed} changed, {self.removed} removed, "
            f"{self.duplicates} duplicates, {len(self.skipped)} skipped; {self.total} images in {self.index_dir}"
        ]
        out += self.notes
        if self.refreshed:
            out.append(f"file metadata captured again for {self.refreshed} indexed images")
        if self.skipped:
            out.append(f"skipped files (also in {Path(self.index_dir) / 'skipped.log'}):")
            out += [f"  {path}: {reason}" for path, reason in self.skipped[:20]]
            if len(self.skipped) > 20:
                out.append(f"  ... and {len(self.skipped) - 20} more")
        return [display_text(line) for line in out]  # printable whatever bytes the paths hold


@dataclass
class SparkIndexSummary(IndexSummary):
    """An ``IndexSummary`` with what the Spark engine adds: its tasks and job."""

    tasks: int = 0
    tasks_run: int = 0  # by this run's Spark job
    tasks_reused: int = 0  # finished by an earlier, interrupted run
    task_size: int = 0
    master: str = ""
    spark_seconds: float = 0.0  # the Spark job, wall clock
    executor_seconds: float = 0.0  # summed over tasks
    model_seconds: float = 0.0  # summed over tasks: inference alone
    worker_peak_rss_mb: float = 0.0  # the largest Python worker process
    embedded_again: int = 0  # staged as known, no longer indexed: embedded again by an executor
    shard_seconds: float = 0.0  # the job writing the shards, wall clock
    driver_peak_rss_mb: float = 0.0

    def lines(self) -> list[str]:
        driver = (f"shards written by executors in {self.shard_seconds:.1f}s; "
                  f"driver peak RSS {self.driver_peak_rss_mb:.0f} MB")
        if not self.tasks_run:
            return super().lines() + [f"spark: no embed job to run ({self.tasks} tasks, {self.tasks_reused} of "
                                      f"them finished by an earlier run); {driver}"]
        return super().lines() + [
            f"spark {self.master}: {self.tasks} tasks of up to {self.task_size} files "
            f"({self.tasks_reused} finished by an earlier run), job {self.spark_seconds:.1f}s, "
            f"executors {self.executor_seconds:.1f}s of which the model {self.model_seconds:.1f}s; "
            f"largest Python worker {self.worker_peak_rss_mb:.0f} MB; {driver}"
        ]

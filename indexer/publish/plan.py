"""Publishing, stage 1: what to build — the index options, the index type, update or rebuild.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, replace

from imgsearch.indexer import ann

RETUNE_GROWTH = 0.1  # re-tune when the count moved by more than this since the last tuning
REBUILD_GROWTH = 2.0  # re-plan the index when the count grew or shrank by this factor since it was built


def resolve_options(manifest: dict, overrides: dict | None = None) -> ann.AnnOptions:
    """Options to build with: ``overrides``, else those the index was last built with, else defaults."""
    stored = (manifest.get("ann") or {}).get("options")
    return replace(ann.AnnOptions(**stored) if stored else ann.AnnOptions(), **(overrides or {}))


def options_changed(manifest: dict, options: ann.AnnOptions) -> bool:
    """True if the index was built before, with other options (so it must be rebuilt now)."""
    stored = (manifest.get("ann") or {}).get("options")
    return stored is not None and not same_options(stored, options)


def same_options(stored: dict | None, options: ann.AnnOptions) -> bool:
    """True if options stored in a manifest are ``options``; a field added since (``on_disk``) counts
    as its default, so an index built by an earlier release is not rebuilt for it."""
    return stored is not None and asdict(ann.AnnOptions(**stored)) == asdict(options)


def space_key(manifest: dict):
    """What the indexed vectors are: a change means every vector changes and the index is rebuilt."""
    return (manifest["dim"], (manifest.get("whitening") or {}).get("file"))


def needs_tuning(prev: dict, n: int, target: float) -> bool:
    """True unless the last tuning was for this target and about this many vectors."""
    tuning, tuned_n = prev.get("tuning"), prev.get("tuned_n", 0)
    return (tuning is None or tuning.get("target_recall") != target
            or abs(n - tuned_n) > RETUNE_GROWTH * max(tuned_n, 1))


@dataclass(frozen=True)
class BuildPlan:
    """What a new version's index is and how it is made."""

    options: ann.AnnOptions
    factory: str  # the FAISS index type
    n: int  # vectors
    d: int  # their dimension (after whitening)
    update: bool  # try updating the served index (else build over every shard)
    trained_file: str | None  # a trained, empty index a build may start from
    on_disk: bool = False  # inverted lists merged into one memory-mapped file (publish/ondisk.py)

    @property
    def memory_bytes(self) -> int:
        return ann.estimate_memory(self.factory, self.n, self.d)


def choose_factory(options: ann.AnnOptions, prev: dict, n: int, d: int, same_space: bool,
                   distributed: bool = False) -> str:
    """The index type: the one asked for, the one built last (while it still suits), or the automatic choice,
    which is one whose lists can be on disk when they will be (filled by executors, or ``--on-disk always``)."""
    if options.index_type != "auto":
        return ann.with_rerank(options.index_type, True) if options.rerank else options.index_type
    old, built_n = prev.get("factory"), prev.get("built_n", 0)
    if (same_space and old and same_options(prev.get("options"), options)
            and built_n / REBUILD_GROWTH <= n <= built_n * REBUILD_GROWTH
            and ann.estimate_memory(old, n, d) <= options.max_memory):
        return old  # small changes keep the trained index; doubling re-plans it
    on_disk = options.on_disk == "always" or (
        options.on_disk == "auto" and (distributed or bool(prev.get("lists_file"))))
    if on_disk and not options.rerank:
        return ann.choose_index(n, d, options.max_memory, options.rerank, on_disk=True)
    return ann.with_rerank(ann.choose_index(n, d, options.max_memory, options.rerank), options.rerank)


def plan_build(manifest: dict, n: int, options: ann.AnnOptions | None = None, rebuild: bool = False,
               distributed: bool = False) -> BuildPlan:
    """The plan for an index over ``n`` vectors of the folder described by ``manifest``.

    The old index (and its training) stays valid while the vectors and the
    index type do; a graph is tuned while it is built (``build.build_index``),
    so re-tuning one means rebuilding it.  ``rebuild``: never update.
    ``distributed``: partial indexes are filled elsewhere (Spark), so an
    on-disk-capable type is built on disk unless the options say never; an
    index on disk already stays there (``ann.wants_on_disk``).
    """
    options = options or resolve_options(manifest)
    prev = manifest.get("ann") or {}
    d = (manifest.get("whitening") or {}).get("dim", manifest["dim"])
    same_space = prev.get("space") == list(space_key(manifest))
    factory = choose_factory(options, prev, n, d, same_space, distributed)
    reusable = (same_space and prev.get("factory") == factory and not rebuild
                and not (ann.is_graph(factory) and needs_tuning(prev, n, options.target_recall)))
    return BuildPlan(options, factory, n, d, update=reusable and bool(manifest.get("index_file")),
                     trained_file=prev.get("trained_file") if reusable else None,
                     on_disk=ann.wants_on_disk(options.on_disk, factory, n, d, options.max_memory,
                                               prefer=distributed or bool(prev.get("lists_file"))))

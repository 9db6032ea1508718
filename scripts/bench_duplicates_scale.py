#!/usr/bin/env python
"""Near-duplicate detection at scale: `imgsearch duplicates` over N synthetic 1280-d vectors with planted groups.

Builds (once, under --work) an index folder of N seeded CNN-like vectors
(indexer/synthetic.py: --clusters centres, spread 1.0, as scripts/bench_search.py)
in which about --share of them are planted near-duplicate groups of 2-5
(``plant_near_duplicates``: cosine 0.96-0.995 to the group's base, ~0.92 or
more between members), published through the automatic FAISS index like any
index.  Then, in a fresh process, runs ``SearchEngine.duplicates`` (what the
command runs) and prints its time, its memory and the planted pairs' recall
and precision (a pair: two images of one group; found pairs: every two
members of an output group).

Memory, from /proc/self/status of the measuring process: VmHWM (peak
resident, file-backed pages included), and the peak of RssAnon sampled every
0.2 s (the process's own memory: what the 4 GB target is about) beside
RssFile at the end (pages of memory-mapped files: the re-ranking vectors of
the FAISS file, the shards read).

With ``--features INDEX`` (an index folder of real images with stored local
features, e.g. the emoji demo's) the synthetic images get local features
too, so verification judges every pair it asks about as it would real
pictures: each image that is no planted copy takes the stored features of
one of INDEX's images (cycled), each planted copy those of its group's
picture edited (half size and JPEG quality 70, a 90 % crop, or brighter by
30, in turn; computed from INDEX's file); they are written as the folder's
side table, as indexing writes it.  The report then adds how many pairs were
judged and how long verification took.

    python scripts/bench_duplicates_scale.py --vectors 100000
    python scripts/bench_duplicates_scale.py --vectors 1000000 --work /tmp/imgsearch-bench-dups
    python scripts/bench_duplicates_scale.py --vectors 100000 --features /tmp/emoji-idx
"""

from __future__ import annotations

import argparse
import itertools
import json
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
import pyarrow as pa  # noqa: E402

from imgsearch.indexer.folder.store import FILE_COLUMNS, EmbeddingStore, schema  # noqa: E402
from imgsearch.indexer.folder.texts import text_array  # noqa: E402
from imgsearch.indexer.synthetic import (  # noqa: E402
    ClusteredEmbeddings,
    plant_near_duplicates,
    synthetic_manifest,
)

CHUNK = 50_000  # vectors made at once
SHARD = 25_000  # rows per shard


def build(folder: Path, n: int, d: int, clusters: int, share: float) -> None:
    """The index folder and planted.npy (n,) int64: the base row of each planted row's group, -1 for others."""
    from imgsearch.indexer.publish.version import publish_index

    if (folder / "manifest.json").is_file() and (folder / "planted.npy").is_file():
        return
    t0 = time.perf_counter()
    store = EmbeddingStore(folder)
    folder.mkdir(parents=True, exist_ok=True)
    manifest = synthetic_manifest(d)
    gen = ClusteredEmbeddings(d, clusters=clusters, spread=1.0, seed=0)
    planted, shards = [], []
    rng = np.random.default_rng(7)
    for i, start in enumerate(range(0, n, CHUNK)):
        vectors = gen.sample(min(CHUNK, n - start), seed=1_000_003 + i)
        group = plant_near_duplicates(vectors, seed=i, share=share)
        planted.append(np.where(group >= 0, group + start, -1))
        for s in range(0, len(vectors), SHARD):
            rows = vectors[s:s + SHARD]
            ids = np.arange(start + s, start + s + len(rows))
            width = rng.integers(320, 4000, len(rows))
            table = pa.table({
                "id": pa.array(ids, pa.int64()), "path": text_array(f"/synthetic/{j}.jpg" for j in ids),
                "label": text_array([""] * len(rows)), "width": pa.array(width, pa.int32()),
                "height": pa.array(width * 3 // 4, pa.int32()),
                "sha256": pa.array([f"{j:064x}" for j in ids]),
                "embedding": pa.FixedSizeListArray.from_arrays(pa.array(rows.ravel()), d),
                **{f.name: pa.nulls(len(rows), f.type) for f in schema(d) if f.name in FILE_COLUMNS},
            }, schema=schema(d))
            shards.append(store.write_table(table))
    made = time.perf_counter() - t0
    manifest = publish_index(store, manifest, shards)
    np.save(folder / "planted.npy", np.concatenate(planted))
    print(f"built {n:,} x {d} vectors ({made:.0f} s to make and write), {manifest['index_type']} in "
          f"{manifest['ann']['seconds']:.0f} s; recall@10 {manifest['ann']['tuning']['recall_at_10']:.3f}",
          flush=True)


def attach_features(folder: Path, source: Path) -> None:
    """The side table of ``folder``'s synthetic images, from ``source``'s stored features (see the docstring)."""
    import io

    from PIL import ImageEnhance

    from imgsearch.indexer.folder.features import FEATURES_FILE, read_features, write_features
    from imgsearch.indexer.inputs.images import load_rgb
    from imgsearch.indexer.inputs.local_features import local_features

    if (folder / FEATURES_FILE).is_file():
        return
    t0 = time.perf_counter()
    stored = read_features(source)
    paths = dict(zip(*(lambda t: (t.column("id").to_pylist(), t.column("path").to_pylist()))(
        EmbeddingStore(source).read_table(EmbeddingStore(source).read_manifest()["shards"], ["id", "path"]))))
    pictures = sorted(stored)
    planted = np.load(folder / "planted.npy")
    edited: dict = {}

    def edit(picture: int, kind: int):
        if (picture, kind) not in edited:
            img = load_rgb(paths[picture])[0]
            w, h = img.size
            if kind == 0:
                buf = io.BytesIO()
                img.resize((max(8, w // 2), max(8, h // 2))).save(buf, format="JPEG", quality=70)
                img = load_rgb(buf.getvalue())[0]
            elif kind == 1:
                img = img.crop((w // 20, h // 20, w - w // 20, h - h // 20))
            else:
                img = ImageEnhance.Brightness(img).enhance(1.12)
            edited[(picture, kind)] = local_features(img)
        return edited[(picture, kind)]

    def rows():  # made as they are written (a batch at a time): never the whole table in memory
        for j in range(len(planted)):
            base = int(planted[j]) if planted[j] >= 0 else j
            picture = pictures[base % len(pictures)]
            yield j, f"{j:064x}", stored[picture][1] if base == j else edit(picture, j % 3)

    size = write_features(folder, rows())
    print(f"local features of {len(planted):,} images from {len(pictures):,} pictures of {source} "
          f"({len(edited):,} edits computed) in {time.perf_counter() - t0:.0f} s: {size / 2**30:.2f} GiB", flush=True)


def _status() -> dict:
    fields = {}
    for line in Path("/proc/self/status").read_text().splitlines():
        key, _, value = line.partition(":")
        if key in ("VmHWM", "VmRSS", "RssAnon", "RssFile", "RssShmem"):
            fields[key] = int(value.split()[0]) * 1024  # kB -> bytes
    return fields


class AnonPeak:
    """The peak of this process's own memory (RssAnon), sampled every 0.2 s from start to ``stop()``."""

    def __init__(self):
        self.peak, self._stop = 0, threading.Event()
        threading.Thread(target=self._sample, daemon=True).start()

    def _sample(self) -> None:
        while not self._stop.wait(0.2):
            self.peak = max(self.peak, _status()["RssAnon"])

    def stop(self) -> int:
        """Stop sampling; the peak, the memory now included."""
        self._stop.set()
        self.peak = max(self.peak, _status()["RssAnon"])
        return self.peak


def measure(folder: Path, threshold: float | None, out: Path) -> None:
    """In this (fresh) process: open the index, find its duplicates, write the groups and the figures."""
    from imgsearch.search.engine import SearchEngine

    anon = AnonPeak()
    t0 = time.perf_counter()
    engine = SearchEngine.open(folder)
    opened = time.perf_counter() - t0
    from imgsearch.search.duplicates.keypoints import KeypointMatcher
    from imgsearch.search.duplicates.groups import find_duplicates

    matcher = KeypointMatcher(engine)
    report = find_duplicates(engine, threshold, keypoints=True, matcher=matcher)
    seconds = time.perf_counter() - t0
    peak_anon = anon.stop()
    status = _status()
    np.savez(out.with_suffix(".npz"), **{f"g{g.group}": np.array(g.ids) for g in report.groups})
    out.write_text(json.dumps({"seconds": seconds, "open_seconds": opened, "find_seconds": report.seconds,
                               "groups": len(report.groups), "pairs": report.pairs, "method": report.method,
                               "threshold": report.threshold, "peak_anon": peak_anon,
                               "judged": len(matcher._evidence), "from_files": matcher.from_files,
                               "unreadable": matcher.unreadable, "confirmed": report.confirmed,
                               "refuted": report.refuted,
                               **status}))


def score(folder: Path, result: Path) -> tuple[float, float, int, int]:
    planted = np.load(folder / "planted.npy")
    truth = set()
    order = np.argsort(planted, kind="stable")
    members = order[planted[order] >= 0]
    for _, rows in itertools.groupby(members, key=lambda r: planted[r]):
        truth.update(itertools.combinations(sorted(rows), 2))
    found = set()
    with np.load(result.with_suffix(".npz")) as groups:
        for name in groups.files:
            found.update(itertools.combinations(sorted(groups[name].tolist()), 2))
    hit = len(truth & found)
    return hit / max(len(truth), 1), hit / max(len(found), 1), len(truth), len(found)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--vectors", type=int, default=100_000)
    ap.add_argument("--dim", type=int, default=1280)
    ap.add_argument("--clusters", type=int, default=10_000)
    ap.add_argument("--share", type=float, default=0.1, help="share of the vectors in planted groups")
    ap.add_argument("--threshold", type=float, default=None, help="default: search.duplicates.DEFAULT_THRESHOLD")
    ap.add_argument("--work", type=Path, default=Path("/tmp/imgsearch-bench-dups"))
    ap.add_argument("--features", type=Path, help="an index folder with stored local features (see above)")
    ap.add_argument("--measure", type=Path, help=argparse.SUPPRESS)  # internal: the measuring process
    ap.add_argument("--out", type=Path, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.measure:
        measure(args.measure, args.threshold, args.out)
        return
    folder = args.work / f"dups-{args.vectors}x{args.dim}-c{args.clusters}-s{args.share}{'-f' if args.features else ''}"
    build(folder, args.vectors, args.dim, args.clusters, args.share)
    if args.features:
        attach_features(folder, args.features)
    out = args.work / f"result-{args.vectors}.json"
    cmd = [sys.executable, __file__, "--measure", str(folder), "--out", str(out)]
    if args.threshold is not None:
        cmd += ["--threshold", str(args.threshold)]
    subprocess.run(cmd, check=True)
    r = json.loads(out.read_text())
    recall, precision, truth, found = score(folder, out)
    gib = 2**30
    print(f"duplicates over {args.vectors:,} x {args.dim} ({r['method']}, threshold {r['threshold']}): "
          f"{r['seconds']:.1f} s ({r['open_seconds']:.1f} s opening), {r['groups']:,} groups from "
          f"{r['pairs']:,} pairs")
    print(f"  verification: {r['judged']:,} pairs judged ({r['from_files']:,} images without stored features, "
          f"{r['unreadable']:,} of them unreadable), {r['confirmed']:,} confirmed, {r['refuted']:,} refuted")
    print(f"  memory: peak RSS (VmHWM) {r['VmHWM'] / gib:.2f} GiB; own memory (peak RssAnon) "
          f"{r['peak_anon'] / gib:.2f} GiB; memory-mapped/file pages at the end (RssFile) {r['RssFile'] / gib:.2f} GiB")
    print(f"  planted pairs: recall {recall:.4f} ({truth:,} planted), precision {precision:.4f} ({found:,} found)")
    print("  targets at 1,000,000: < 20 min, own memory < 4 GB, recall >= 0.95, precision >= 0.95")


if __name__ == "__main__":
    main()

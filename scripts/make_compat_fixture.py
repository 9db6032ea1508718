"""One-off: write ``tests/data/v0-index``, an index folder made by THIS release, and its answers.

``tests/search/test_compat.py`` opens that folder with whatever code it runs under and
checks that it searches, classifies and indexes incrementally exactly as the
release that wrote it did.  So this script is run ONCE, at the release whose
format is to be kept readable (it was run at a5e8f0e), and its output is
committed; re-running it later would record the new code's answers instead.

    python scripts/make_compat_fixture.py            # from the repo root, in the project's venv
    python scripts/make_compat_fixture.py --force    # replace an existing fixture

What it writes (about 0.6 MB)::

    tests/data/v0-index/images/<digit>/<n>.png   36 images: scikit-learn digits 0-5, 6 each, 64x64
    tests/data/v0-index/more/<digit>/<n>.png     12 more (2 per digit), for the incremental run
    tests/data/v0-index/index/                   'imgsearch index images --shard-size 20' (2 shards)
                                                 + 'imgsearch train-head --name digit'
    tests/data/v0-index/expected.json            this code's answers

expected.json holds, at k=5: search by id (4 ids), by image file (an indexed
image and a new one) and by a stored vector; head-aware search by id and by
image; classify (top 3) of two images; the first 8 components and the norm of
two stored embeddings; every row's path and label; ``info --json``'s main
fields.  Then, under "incremental", the index run's summary counts, the new
ids, info, and the same queries again (plus search by some new ids) after it.
Queries whose adjacent scores (over the top k+1) are closer than 1e-4 are
refused, so the recorded order cannot flip on rounding.

Paths are stored absolute in the shards (the manifest holds none).  The index
is built in a fixed staging folder, STAGE (``/tmp/imgsearch-v0-fixture/v0-index``),
then copied here, so its shards hold STAGE/images/... paths.  The incremental
run is recorded on a copy of the fixture in another folder, as the test makes
one: ``imgsearch index COPY/images COPY/more --index COPY/index``.  The first
batch's images then have other paths but the same content (sha256): the old
code counts them "already indexed", and their rows keep their ids and their
STAGE paths; the 12 new images get ids 36-47 and COPY paths.  expected.json
writes a path as "{generated}/images/0/0000.png" (under STAGE, named in
``generated_root``) or "{root}/more/..." (under the copy the run indexed), so
the answers hold wherever the test puts its copy.

The index, train-head, info and verify run as ``imgsearch`` subprocesses with
PYTHONPATH set to this checkout, and the queries in this process with this
checkout first on sys.path: the code recorded is this checkout's, whatever
the venv's editable install points at.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
from PIL import Image

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))  # this checkout's code, even in a venv with another editable install

DEST = REPO / "tests" / "data" / "v0-index"
STAGE = Path("/tmp/imgsearch-v0-fixture/v0-index")
CLASSES = 6  # digits 0..5
PER_CLASS = 6  # first batch: 36 images
MORE_PER_CLASS = 2  # incremental batch: 12 images
SIZE = 64
SHARD_SIZE = 20  # 36 rows -> 2 shards (20 + 16); the incremental 12 -> a third
K = 5
HEAD = "digit"
ID_QUERIES = [0, 8, 22, 33]  # two in each shard
HEAD_ID_QUERIES = [3, 26]
MIN_GAP = 1e-4  # adjacent scores (top K+1) at least this far apart: the order cannot flip on rounding
TIES: list[str] = []  # queries whose order could flip: reported, then the script stops
SUMMARY = re.compile(r"indexed (\d+) new images in .*?; (\d+) already indexed, (\d+) changed, (\d+) removed, "
                     r"(\d+) duplicates, (\d+) skipped; (\d+) images in ")


def write_images(root: Path) -> tuple[list[str], list[str]]:
    """The first batch under root/images and the extra one under root/more; their relative paths."""
    from sklearn.datasets import load_digits

    digits = load_digits()
    pixels = (digits.images * (255 / 16)).round().astype(np.uint8)  # (1797, 8, 8)
    first, more = [], []
    for label in range(CLASSES):
        where = np.flatnonzero(digits.target == label)[: PER_CLASS + MORE_PER_CLASS]
        for rank, i in enumerate(where):
            rel = f"{'images' if rank < PER_CLASS else 'more'}/{label}/{i:04d}.png"
            (root / rel).parent.mkdir(parents=True, exist_ok=True)
            Image.fromarray(pixels[i], "L").resize((SIZE, SIZE), Image.Resampling.BILINEAR).save(root / rel)
            (first if rank < PER_CLASS else more).append(rel)
    return first, more


def cli(*args: str) -> subprocess.CompletedProcess:
    """``imgsearch ARGS`` with this checkout's code."""
    env = dict(os.environ, PYTHONPATH=str(REPO))
    run = subprocess.run([sys.executable, "-c", "from imgsearch.search.cli.commands import main; main()", *args],
                         capture_output=True, text=True, env=env, timeout=900)
    if run.returncode != 0:
        sys.exit(f"imgsearch {' '.join(args)} failed:\n{run.stdout}\n{run.stderr}")
    return run


def relative(path: str, roots: dict[str, Path]) -> str:
    """A stored absolute path as "{generated}/images/0/0000.png" or "{root}/more/...": which root it
    is under (the staging folder the fixture was made in, or the copy an incremental run indexed
    from) and where below it."""
    for marker, root in roots.items():
        prefix = str(root) + os.sep
        if path.startswith(prefix):
            return marker + "/" + Path(path[len(prefix):]).as_posix()
    raise ValueError(f"{path} is under none of {list(roots.values())}")


def hits(found, roots: dict[str, Path], gap_check=None) -> list[dict]:
    out = [{"id": h.id, "path": relative(h.path, roots), "label": h.label, "score": h.score} for h in found]
    scores = [h.score for h in found]
    gaps = np.diff(scores) if len(scores) > 1 else np.array([-1.0])
    if gap_check is not None and -gaps.max() < MIN_GAP:  # scores fall: diffs are negative
        TIES.append(f"near tie in {gap_check}: {scores}")
    return out[:K]


def predictions(preds) -> list[dict]:
    return [{"class": c, "probability": p} for c, p in preds]


def info_fields(data: dict) -> dict:
    bb = data["backbone"]
    return {"backbone": bb["name"], "input_size": bb["input_size"], "dim": data["dim"], "count": data["count"],
            "shards": data["shards"], "metric": data["metric"], "index_type": data["index_type"],
            "heads": data["heads"], "whitening": data["whitening"], "generation": data["generation"]}


def answers(index_dir: Path, root: Path, roots: dict[str, Path], vector: np.ndarray, queries: dict) -> dict:
    """What the engine of this checkout answers for the recorded queries."""
    from imgsearch.search.engine import SearchEngine

    engine = SearchEngine.open(index_dir)
    q = {}
    q["by_id"] = {str(i): hits(engine.search_id(i, K + 1), roots, f"id {i}") for i in ID_QUERIES}
    q["by_image"] = {rel: hits(engine.search_image(root / rel, K + 1), roots, rel) for rel in queries["images"]}
    q["by_vector"] = hits(engine.search_vector(vector, K + 1), roots, "vector")
    q["head_by_id"] = {str(i): hits(engine.search_id(i, K + 1, head=HEAD), roots, f"head id {i}")
                       for i in HEAD_ID_QUERIES}
    q["head_by_image"] = {rel: hits(engine.search_image(root / rel, K + 1, head=HEAD), roots, f"head {rel}")
                          for rel in queries["images"]}
    q["classify"] = {rel: predictions(engine.classify(root / rel, HEAD, top=3)) for rel in queries["classify"]}
    q["vectors"] = {str(i): {"norm": float(np.linalg.norm(engine.vector(i))),
                             "first": [float(x) for x in engine.vector(i)[:8]]} for i in (0, 35)}
    q["rows"] = {str(i): {"path": relative(engine.get(i).path, roots), "label": engine.get(i).label}
                 for i in engine.ids.tolist()}
    return q


def parse_summary(stdout: str) -> dict:
    m = SUMMARY.search(stdout)
    if not m:
        sys.exit(f"unexpected summary: {stdout}")
    return dict(zip(["added", "already_indexed", "changed", "removed", "duplicates", "skipped", "total"],
                    map(int, m.groups())))


def check_cli_queries(index_dir: Path, root: Path, recorded: dict, queries: dict) -> None:
    """``imgsearch search/classify --json`` answer as the engine did (the test checks the CLI with them)."""
    images = [str(root / rel) for rel in queries["images"]]
    for key, head in (("by_image", []), ("head_by_image", ["--head", HEAD])):
        out = cli("search", "--index", str(index_dir), "--json", "-k", str(K), *head, *images).stdout
        for rel, line in zip(queries["images"], out.splitlines()):
            got = [(r["id"], r["score"]) for r in json.loads(line)["results"]]
            want = [(h["id"], h["score"]) for h in recorded[key][rel]]
            if [i for i, _ in got] != [i for i, _ in want] or not np.allclose([s for _, s in got],
                                                                             [s for _, s in want], atol=1e-6):
                sys.exit(f"imgsearch search {' '.join(head)} {rel}: {got} != the engine's {want}")
    out = cli("classify", "--index", str(index_dir), "--head", HEAD, "--json", "--top", "3",
              *(str(root / rel) for rel in queries["classify"])).stdout
    for rel, line in zip(queries["classify"], out.splitlines()):
        got = [(p["class"], p["probability"]) for p in json.loads(line)["predictions"]]
        want = [(p["class"], p["probability"]) for p in recorded["classify"][rel]]
        if [c for c, _ in got] != [c for c, _ in want] or not np.allclose([p for _, p in got],
                                                                         [p for _, p in want], atol=1e-6):
            sys.exit(f"imgsearch classify {rel}: {got} != the engine's {want}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--force", action="store_true", help="replace an existing tests/data/v0-index")
    args = parser.parse_args()
    if DEST.exists() and not args.force:
        sys.exit(f"{DEST} exists; it records an earlier release's answers. --force replaces it")

    shutil.rmtree(STAGE, ignore_errors=True)
    STAGE.mkdir(parents=True)
    first, more = write_images(STAGE)
    # an indexed image (finds itself) and a new one, for search; two others for classify
    queries = {"images": [first[13], more[7]], "classify": [first[25], more[10]]}
    index_dir = STAGE / "index"
    cli("index", str(STAGE / "images"), "--index", str(index_dir), "--shard-size", str(SHARD_SIZE),
        "--no-progress")
    trained = cli("train-head", "--index", str(index_dir), "--name", HEAD)
    info = json.loads(cli("info", "--index", str(index_dir), "--json").stdout)
    if info["shards"] < 2:
        sys.exit(f"only {info['shards']} shard(s)")

    from imgsearch.search.engine import SearchEngine

    engine = SearchEngine.open(index_dir)
    vector = (0.7 * engine.vector(4) + 0.3 * engine.vector(30)).round(4).astype(np.float32)  # (1280,)
    before = answers(index_dir, STAGE, {"{generated}": STAGE}, vector, queries)
    check_cli_queries(index_dir, STAGE, before, queries)

    # the incremental run, on a copy elsewhere: the test's situation
    with tempfile.TemporaryDirectory() as tmp:
        copy = Path(tmp) / "v0-index"
        shutil.copytree(STAGE, copy)
        command = ["index", "{root}/images", "{root}/more", "--index", "{root}/index",
                   "--shard-size", str(SHARD_SIZE), "--no-progress", "--workers", "0"]
        summary = parse_summary(cli(*(a.replace("{root}", str(copy)) for a in command)).stdout)
        rerun = parse_summary(cli(*(a.replace("{root}", str(copy)) for a in command)).stdout)  # adds nothing
        after_info = json.loads(cli("info", "--index", str(copy / "index"), "--json").stdout)
        verified = cli("verify", "--index", str(copy / "index")).stdout
        if not verified.startswith("OK"):
            sys.exit(verified)
        roots = {"{generated}": STAGE, "{root}": copy}
        after = answers(copy / "index", copy, roots, vector, queries)
        new_ids = sorted(set(map(int, after["rows"])) - set(map(int, before["rows"])))
        incremental = {
            "command": command,
            "summary": summary,
            "rerun_summary": rerun,
            "new_ids": new_ids,
            "info": info_fields(after_info),
            "new_by_id": {str(i): hits(SearchEngine.open(copy / "index").search_id(i, K + 1), roots,
                                       f"new id {i}") for i in new_ids[::4]},
            **{key: after[key] for key in ("by_id", "by_image", "by_vector", "head_by_id", "head_by_image",
                                           "classify", "rows")},
        }

    if TIES:
        sys.exit("\n".join(TIES) + "\nchoose other queries")
    commit = subprocess.run(["git", "-C", str(REPO), "rev-parse", "HEAD"], capture_output=True, text=True)
    dirty = subprocess.run(["git", "-C", str(REPO), "status", "--porcelain", "--", "indexer", "search", "web"],
                           capture_output=True, text=True).stdout.strip()
    expected = {
        "about": "answers of the release that wrote index/ (scripts/make_compat_fixture.py), k results "
                 "per query; a path '{generated}/X' is generated_root/X (the shards hold the paths of the "
                 "folder the fixture was made in), '{root}/X' is X under the copy the incremental run indexed",
        "commit": commit.stdout.strip() + (" (modified)" if dirty else ""),
        "generated_root": str(STAGE),
        "k": K,
        "head": HEAD,
        "shard_size": SHARD_SIZE,
        "images": first,
        "more": more,
        "info": info_fields(info),
        "versions": info["versions"],
        "train_head_output": trained.stdout.strip().splitlines(),
        "queries": queries,
        "vector_query": [float(x) for x in vector],
        **before,
        "incremental": incremental,
    }
    if DEST.exists():
        shutil.rmtree(DEST)
    shutil.copytree(STAGE, DEST)
    (DEST / "expected.json").write_text(json.dumps(expected, indent=1) + "\n")
    size = sum(p.stat().st_size for p in DEST.rglob("*") if p.is_file())
    shutil.rmtree(STAGE.parent, ignore_errors=True)
    print(f"wrote {DEST} ({size / 1024:.0f} KiB): {len(first)} + {len(more)} images, "
          f"{info['shards']} shards, head {HEAD!r}; incremental: {summary}")


if __name__ == "__main__":
    main()

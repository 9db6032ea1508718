#!/usr/bin/env python
"""How much verification costs: `imgsearch duplicates` with and without keypoints, side by side in one run.

On an index folder with stored local features (``imgsearch sample emoji DIR``
then ``imgsearch index DIR --index IDX``: indexing writes them), times, each
in a fresh process as a user runs it:

* ``imgsearch duplicates --no-keypoints --json`` (cosine only; three times, before, between and after the
  others: the ratios are to the median, as this run is mostly the process's start);
* ``imgsearch duplicates --json`` (verified: the default), with one verifying
  process (``IMGSEARCH_VERIFY_WORKERS=1``) and with one per core;

and prints the ratios, the CPU (cores, load, AVX flags) and whether the
outputs with one process and with several are the same.  ``--evidence``
also checks, pair by pair, that the evidence judged in worker processes
(``KeypointMatcher.prepare``) equals the plain ``verifier.compare`` of the
same pair, for every pair the command judges.

    python scripts/bench_duplicates_speed.py --index /tmp/emoji-idx --evidence
"""

from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

IMGSEARCH = str(Path(sys.executable).parent / "imgsearch")


def cpu() -> str:
    flags = sorted(set(re.findall(r"avx512[a-z_]*|avx2", Path("/proc/cpuinfo").read_text())))
    model = re.search(r"model name\s*:\s*(.*)", Path("/proc/cpuinfo").read_text())
    return (f"{os.cpu_count()} cores ({model.group(1) if model else '?'}), load {os.getloadavg()[0]:.1f}, "
            f"flags {' '.join(flags) or 'none'}")


def timed(index: Path, *args: str, workers: int | None = None) -> tuple[float, str]:
    env = dict(os.environ)
    if workers is not None:
        env["IMGSEARCH_VERIFY_WORKERS"] = str(workers)
    started = time.perf_counter()
    out = subprocess.run([IMGSEARCH, "duplicates", "--index", str(index), "--json", *args], env=env,
                         capture_output=True, text=True, check=True).stdout
    return time.perf_counter() - started, out


def check_evidence(index: Path) -> str:
    from imgsearch.search.duplicates import groups
    from imgsearch.search.duplicates.keypoints import KeypointMatcher
    from imgsearch.search.duplicates.verifier import compare
    from imgsearch.search.engine import SearchEngine

    engine = SearchEngine.open(index)
    matcher = KeypointMatcher(engine)
    groups.find_duplicates(engine, keypoints=True, matcher=matcher)
    judged = dict(matcher._evidence)
    differ = [p for p, e in judged.items() if compare(matcher.features(p[0]), matcher.features(p[1])) != e]
    return f"{len(judged)} pairs judged: {len(differ)} with other evidence than the plain compare {differ[:5]}"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--index", type=Path, required=True)
    ap.add_argument("--evidence", action="store_true", help="check every judged pair's evidence too")
    ap.add_argument("--out", type=Path, help="write the verified groups there (the command's --json lines)")
    args = ap.parse_args()
    print(f"cpu: {cpu()}")
    # the baseline is mostly the process's start (about a second), whose noise moves the ratio more than the
    # verifier does: it runs before and after the verified runs, and the ratio is taken to the median of its three
    plains = [timed(args.index, "--no-keypoints")[0]]
    one, out_one = timed(args.index, workers=1)
    plains.append(timed(args.index, "--no-keypoints")[0])
    many, out_many = timed(args.index)
    plains.append(timed(args.index, "--no-keypoints")[0])
    plain = sorted(plains)[1]
    print(f"--no-keypoints: {plain:.1f} s (median of {', '.join(f'{p:.2f}' for p in plains)}); "
          f"keypoints, 1 process: {one:.1f} s ({one / plain:.1f}x); "
          f"keypoints, one per core: {many:.1f} s ({many / plain:.1f}x); groups identical: {out_one == out_many}")
    if args.out:
        args.out.write_text(out_many)
    if args.evidence:
        print(check_evidence(args.index))
    print(f"cpu at the end: {cpu()}")


if __name__ == "__main__":
    main()

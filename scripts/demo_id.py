"""Print the id of an indexed image, found by searching with its own file: `make demo` opens the page on it.

    python scripts/demo_id.py INDEX_DIR IMAGE_FILE

Exits 1 with one line on stderr where the file is not in the index (its best match is another file)."""

from __future__ import annotations

import sys
from pathlib import Path

from imgsearch.search.engine import SearchEngine
from imgsearch.search.errors import ImgsearchError


def main(argv: list[str]) -> int:
    if len(argv) != 2:
        print(__doc__.strip().splitlines()[2].strip(), file=sys.stderr)
        return 2
    index_dir, image = argv
    try:
        hits = SearchEngine.open(index_dir).search_image(image, k=1)
    except ImgsearchError as exc:
        print(f"demo_id: {exc}", file=sys.stderr)
        return 1
    if not hits or Path(hits[0].path).resolve() != Path(image).resolve():
        print(f"demo_id: {image} is not in the index {index_dir}: index its folder first", file=sys.stderr)
        return 1
    print(hits[0].id)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

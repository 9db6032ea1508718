"""A fixed set of pairs for the verifier's verdicts (tests/search/test_verifier_verdicts.py): photo tiles and
their edits against the original and against the bordered copy, look-alike emoji of one family, MNIST 1s; both
orders.  ``python -m tests.search.verdict_pairs`` writes the verdicts of the verifier that runs it to
tests/data/verdicts.json (done once with the verifier before the speed-ups that must not change a verdict)."""

from __future__ import annotations

import itertools
import json
from pathlib import Path

VERDICTS = Path(__file__).parent.parent / "data" / "verdicts.json"
TILES = 8  # photo tiles, each with its 8 edits
PER_FAMILY = 5  # look-alikes of each family, every pair


def pairs() -> dict[str, tuple]:
    """name -> (image a, image b), a the keeper."""
    from imgsearch.indexer.inputs.near_duplicates import near_duplicate_set
    from imgsearch.indexer.inputs.samples import lookalikes

    out = {}
    tiles = [i for i in near_duplicate_set() if i.group < TILES]
    for group in range(TILES):
        items = {i.edit: i for i in tiles if i.group == group}
        for edit, item in items.items():
            for keeper in ("original", "border"):
                if edit != keeper:
                    out[f"{group}:{keeper}:{edit}"] = (items[keeper].image, item.image)
                    out[f"{group}:{edit}:{keeper}"] = (item.image, items[keeper].image)
    families: dict[str, list] = {}
    for item in lookalikes(per_family=PER_FAMILY):
        families.setdefault(item.edit, []).append(item)
    for family, items in families.items():
        for x, y in itertools.permutations(items, 2):
            out[f"{family}:{x.name}:{y.name}"] = (x.image, y.image)
    return out


def verdicts() -> dict[str, bool | None]:
    from imgsearch.indexer.inputs.local_features import local_features
    from imgsearch.search.duplicates.verifier import compare

    found = {}
    cache: dict[int, object] = {}

    def features(image):
        if id(image) not in cache:
            cache[id(image)] = local_features(image)
        return cache[id(image)]

    for name, (a, b) in pairs().items():
        found[name] = compare(features(a), features(b)).match
    return found


if __name__ == "__main__":
    VERDICTS.write_text(json.dumps(verdicts(), indent=0, sort_keys=True) + "\n")
    print(f"wrote {VERDICTS}")

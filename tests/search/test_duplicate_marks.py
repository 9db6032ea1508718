"""Marks of "not a duplicate" (indexer/run/dup_marks.py, search/duplicates/marks.py) on real index folders with
the fake model: a marked pair is never in one group, in this run, the next version and after the file is
indexed again; unmarking restores the group; bad marks are refused with what to change."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from PIL import Image

from imgsearch.indexer.config import IndexConfig
from imgsearch.indexer.errors import InvalidInputError, NotFoundError
from imgsearch.indexer.folder.dup_marks import MARKS_FILE
from imgsearch.indexer.folder.store import IndexFormatError
from imgsearch.indexer.run.dup_marks import list_marks, mark_not_duplicates, unmark
from imgsearch.indexer.run.pipeline import index_images
from imgsearch.indexer.run.remove import remove_images
from imgsearch.search.engine import SearchEngine
from tests.pixel_model import DUP_THRESHOLD, NAME

CONFIG = IndexConfig(backbone=NAME, progress=False)


def _edit(src: Path, dest: Path, scale: float, quality: int) -> None:
    with Image.open(src) as im:
        im.resize((int(im.width * scale), int(im.height * scale))).save(dest, quality=quality)


@pytest.fixture
def three(tmp_path, photos_dir):
    """An index where astronaut.jpg has two edits (one group of three), rocket.jpg one, and other photos."""
    src = tmp_path / "src"
    src.mkdir()
    for name in ("astronaut", "rocket", "coffee", "retina"):
        shutil.copy(photos_dir / f"{name}.jpg", src / f"{name}.jpg")
    _edit(photos_dir / "astronaut.jpg", src / "astronaut-half.jpg", 0.5, 80)
    _edit(photos_dir / "astronaut.jpg", src / "astronaut-third.jpg", 0.34, 70)
    _edit(photos_dir / "rocket.jpg", src / "rocket-half.jpg", 0.5, 75)
    index_dir = tmp_path / "idx"
    index_images([src], index_dir, CONFIG)
    return src, index_dir


def _groups(engine) -> list[set[str]]:
    return [{Path(p).name for p in g.paths} for g in engine.duplicates(DUP_THRESHOLD, keypoints=False).groups]


def _ids(engine) -> dict[str, int]:
    return {Path(h.path).name: h.id for h in engine.get_many(sorted(engine.ids))}


def test_a_marked_pair_leaves_the_group_in_this_and_every_later_version(three, photos_dir):
    src, index_dir = three
    engine = SearchEngine.open(index_dir)
    before = _groups(engine)
    assert {"astronaut.jpg", "astronaut-half.jpg", "astronaut-third.jpg"} in before
    assert {"rocket.jpg", "rocket-half.jpg"} in before
    ids = _ids(engine)

    summary = mark_not_duplicates(index_dir, [ids["astronaut-half.jpg"], ids["astronaut-third.jpg"]])
    assert (summary.pairs, summary.changed, summary.total) == (1, 1, 1)
    # the same engine (a server's, its reports cached per version) answers with the mark applied
    after = _groups(engine)
    assert not any({"astronaut-half.jpg", "astronaut-third.jpg"} <= g for g in after)
    assert {"astronaut.jpg", "astronaut-half.jpg"} in after  # the better-scoring edit stays with the keeper
    assert {"rocket.jpg", "rocket-half.jpg"} in after
    assert engine.duplicates(DUP_THRESHOLD, keypoints=False).marked == 1

    # a new version (a new file indexed; its shards compacted after the publish): the mark holds
    _edit(photos_dir / "coffee.jpg", src / "coffee-half.jpg", 0.5, 80)
    index_images([src], index_dir, CONFIG)
    newer = SearchEngine.open(index_dir)
    assert newer.generation > engine.generation
    assert not any({"astronaut-half.jpg", "astronaut-third.jpg"} <= g for g in _groups(newer))
    assert {"coffee.jpg", "coffee-half.jpg"} in _groups(newer)

    # the file removed from the index and indexed again: a new id, the same content, the same mark
    remove_images(index_dir, [ids["astronaut-third.jpg"]])
    index_images([src], index_dir, CONFIG)
    again = SearchEngine.open(index_dir)
    assert _ids(again)["astronaut-third.jpg"] != ids["astronaut-third.jpg"]
    assert not any({"astronaut-half.jpg", "astronaut-third.jpg"} <= g for g in _groups(again))
    [listed] = list_marks(index_dir)
    assert set(listed["ids"]) == {ids["astronaut-half.jpg"], _ids(again)["astronaut-third.jpg"]}
    assert set(listed["marked_ids"]) == {ids["astronaut-half.jpg"], ids["astronaut-third.jpg"]}

    # unmarking by today's ids restores the group of three
    assert unmark(index_dir, [ids["astronaut-half.jpg"], _ids(again)["astronaut-third.jpg"]]).changed == 1
    assert {"astronaut.jpg", "astronaut-half.jpg", "astronaut-third.jpg"} in _groups(again)
    assert list_marks(index_dir) == []


def test_a_group_mark_separates_every_member(three):
    _, index_dir = three
    engine = SearchEngine.open(index_dir)
    ids = _ids(engine)
    group = [ids["astronaut.jpg"], ids["astronaut-half.jpg"], ids["astronaut-third.jpg"]]
    assert mark_not_duplicates(index_dir, group).changed == 3
    assert all(len(g & {"astronaut.jpg", "astronaut-half.jpg", "astronaut-third.jpg"}) < 2 for g in _groups(engine))
    verified = engine.duplicates(DUP_THRESHOLD, keypoints=True)  # the verifier's verdicts never join them either
    assert all(len(set(g.ids) & set(group)) < 2 for g in verified.groups)
    assert mark_not_duplicates(index_dir, group[:2]).changed == 0  # marked already: nothing new
    # unmarking one pair restores that pair only
    unmark(index_dir, group[:2])
    assert {"astronaut.jpg", "astronaut-half.jpg"} in _groups(engine)
    assert not any({"astronaut-third.jpg"} < g and "astronaut" in " ".join(g) for g in _groups(engine))


def test_a_mark_of_the_keeper_and_a_member_leaves_the_rest_grouped(three):
    _, index_dir = three
    engine = SearchEngine.open(index_dir)
    ids = _ids(engine)
    mark_not_duplicates(index_dir, [ids["astronaut.jpg"], ids["astronaut-half.jpg"]])
    groups = _groups(engine)
    assert {"astronaut.jpg", "astronaut-third.jpg"} in groups
    assert not any({"astronaut.jpg", "astronaut-half.jpg"} <= g for g in groups)


def test_a_changed_file_is_another_picture_and_loses_its_marks(three, photos_dir):
    src, index_dir = three
    ids = _ids(SearchEngine.open(index_dir))
    mark_not_duplicates(index_dir, [ids["rocket.jpg"], ids["rocket-half.jpg"]])
    assert {"rocket.jpg", "rocket-half.jpg"} not in _groups(SearchEngine.open(index_dir))
    _edit(photos_dir / "rocket.jpg", src / "rocket-half.jpg", 0.6, 85)  # other bytes, the same picture
    index_images([src], index_dir, CONFIG)
    assert {"rocket.jpg", "rocket-half.jpg"} in _groups(SearchEngine.open(index_dir))


@pytest.mark.parametrize("given, error, words", [
    ([3], InvalidInputError, "two different ids"),
    ([3, 3], InvalidInputError, "two different ids"),
    ([], InvalidInputError, "two different ids"),
    ([0, 999999], NotFoundError, "no image with id 999999"),
    (["x", 1], InvalidInputError, "id must be an integer"),
    ([-1, 1], InvalidInputError, "id must be an integer"),
    (list(range(201)), InvalidInputError, "at most 200 ids"),
])
def test_bad_marks_are_refused_with_what_to_change(dup_index, given, error, words):
    index_dir, _ = dup_index
    with pytest.raises(error, match=words):
        mark_not_duplicates(index_dir, given)
    assert not (Path(index_dir) / MARKS_FILE).exists()


def test_a_damaged_marks_file_says_how_to_fix_it(three):
    _, index_dir = three
    (index_dir / MARKS_FILE).write_text(json.dumps({"format": 1, "marks": [{"sha256": ["b", "a"]}]}))
    with pytest.raises(IndexFormatError, match="damaged.*delete it"):
        SearchEngine.open(index_dir).duplicates(DUP_THRESHOLD, keypoints=False)


def test_a_mark_of_an_image_no_longer_indexed_is_listed_and_can_be_undone_by_its_old_ids(three):
    _, index_dir = three
    ids = _ids(SearchEngine.open(index_dir))
    pair = [ids["rocket.jpg"], ids["rocket-half.jpg"]]
    mark_not_duplicates(index_dir, pair)
    remove_images(index_dir, [pair[1]])
    [listed] = list_marks(index_dir)
    assert sorted(listed["ids"], key=str) == sorted([pair[0], None], key=str) and sorted(listed["marked_ids"]) == sorted(pair)
    with pytest.raises(NotFoundError, match=f"no image with id {pair[1]}"):
        mark_not_duplicates(index_dir, pair)  # marking needs indexed ids
    assert unmark(index_dir, pair).changed == 1 and list_marks(index_dir) == []


def test_no_group_ever_holds_a_marked_pair_whatever_is_marked(three):
    """The general rule, over random marks (seeded): no group holds a marked pair, and every member of a group
    still scores at least the threshold against its keeper."""
    import random

    from imgsearch.indexer.folder.dup_marks import marks_path

    _, index_dir = three
    engine = SearchEngine.open(index_dir)
    all_ids = sorted(int(i) for i in engine.ids)
    for seed in range(12):
        rng = random.Random(seed)
        marks_path(index_dir).unlink(missing_ok=True)
        marked = set()
        for _ in range(rng.randint(1, 4)):
            ids = rng.sample(all_ids, rng.randint(2, 3))
            mark_not_duplicates(index_dir, ids)
            marked |= {(min(a, b), max(a, b)) for a in ids for b in ids if a != b}
        report = engine.duplicates(DUP_THRESHOLD, keypoints=False)
        assert report.marked == len(marked)
        for g in report.groups:
            members = set(g.ids)
            assert not any(a in members and b in members for a, b in marked), (seed, g.ids, marked)
            assert all(s >= DUP_THRESHOLD for s in g.scores), (seed, g)

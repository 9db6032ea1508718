"""``explain`` by path or id (issue 32): a file the index holds is that indexed image, however its path is given;
a file it does not hold is a query image, never a result.  The lookup runs on the fake model's index (fast);
the explanation itself (the CNN's feature map) in tests/web/test_explain.py."""

from __future__ import annotations

import os

import pytest

from imgsearch.indexer.config import IndexConfig
from imgsearch.indexer.errors import InvalidInputError
from imgsearch.indexer.run.pipeline import index_images
from imgsearch.search.engine import SearchEngine
from imgsearch.search.explain.explainer import indexed_id
from tests.helpers import rng_image
from tests.pixel_model import NAME

NAMES = ["plain.png", "with space.png", "\u00e9t\u00e9 \U0001f600.png", "%41.png", "3.png",
         os.fsdecode(b"latin1-\xe9.png")]


@pytest.fixture(scope="module")
def indexed(tmp_path_factory):
    root = tmp_path_factory.mktemp("by-path")
    src = root / "src" / "sub"
    src.mkdir(parents=True)
    for i, name in enumerate(NAMES):
        rng_image(i).save(src / name, "PNG")
    rng_image(99).save(root / "outside.png")
    index_images([root / "src"], root / "idx", IndexConfig(progress=False, backbone=NAME))
    engine = SearchEngine.open(root / "idx")
    return root, engine, {h.path: h.id for h in engine.get_many(engine.ids.tolist())}


def test_every_indexed_file_is_found_by_its_path(indexed):
    root, engine, by_path = indexed
    assert len(by_path) == len(NAMES)
    for path, row_id in by_path.items():
        assert indexed_id(engine, path) == row_id
        assert indexed_id(engine, type("P", (os.PathLike,), {"__fspath__": lambda self: path})()) == row_id


@pytest.mark.parametrize("how", ["relative", "dotdot", "linked-folder", "linked-file", "trailing-dot"])
def test_however_the_path_is_given(indexed, monkeypatch, tmp_path, how):
    root, engine, by_path = indexed
    target = root / "src" / "sub" / NAMES[2]
    if how == "relative":
        monkeypatch.chdir(root / "src")
        given = os.path.join("sub", NAMES[2])
    elif how == "dotdot":
        given = f"{root}/src/sub/../sub/{NAMES[2]}"
    elif how == "linked-folder":
        (tmp_path / "ln").symlink_to(root / "src")
        given = f"{tmp_path}/ln/sub/{NAMES[2]}"
    elif how == "linked-file":
        (tmp_path / "f.png").symlink_to(target)
        given = str(tmp_path / "f.png")
    else:
        given = f"{root}/src/./sub/{NAMES[2]}"
    assert indexed_id(engine, given) == by_path[str(target)]


def test_what_the_index_does_not_hold_is_not_found(indexed):
    root, engine, _ = indexed
    for value in (str(root / "outside.png"), str(root / "src" / "sub"), str(root / "src" / "sub" / "gone.png"),
                  "", "3", "http://example.com/plain.png", os.fsencode(root / "src" / "sub" / "plain.png"), 3, None):
        assert indexed_id(engine, value) is None, value


def test_a_result_the_index_does_not_hold_is_refused_saying_so(indexed):
    root, engine, by_path = indexed
    some = next(iter(by_path.values()))
    for result in (str(root / "outside.png"), "no-such-file.png", root / "outside.png"):
        with pytest.raises(InvalidInputError, match="not an image this index holds"):
            engine.explain(some, result)
    with pytest.raises(InvalidInputError, match="must be an indexed id"):
        engine.explain(some, 2.5)

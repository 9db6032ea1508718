"""Cut-off and paging (min_score, offset) and queries of several examples (Rocchio, best), in the engine
and on the command line, checked against exact rankings computed from the stored embeddings."""

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from imgsearch.search.engine import MAX_K, UnknownIdError
from imgsearch.search.errors import InvalidInputError
from imgsearch.search.query.examples import NEGATIVE_WEIGHT, Example
from tests.helpers import fake_model_env
from tests.pixel_model import DIM

IMGSEARCH = str(Path(sys.executable).parent / "imgsearch")


def _cosines(engine, vector) -> dict[int, float]:
    """Every indexed id's exact cosine to ``vector`` (the index is flat and unwhitened)."""
    return {h.id: h.score for h in engine.search_vector(vector, len(engine))}


def _unit(v):
    return v / np.linalg.norm(v)


def test_offset_pages_through_the_ranking(engine):
    full = [h.id for h in engine.search_id(0, 30)]
    assert [h.id for h in engine.search_id(0, 10, offset=10)] == full[10:20]
    assert [h.id for h in engine.search_vector(engine.vector(0), 5, offset=1)] == full[:5]  # itself is rank 0
    # ranks past MAX_K are never served: the window ends there
    assert len(engine.search_id(0, 10, offset=MAX_K - 3)) <= 3


def test_min_score_returns_every_result_at_or_above_it(engine):
    full = engine.search_vector(engine.vector(0), len(engine))
    cut = full[7].score
    got = engine.search_vector(engine.vector(0), min_score=cut)  # k: up to MAX_K
    assert [h.id for h in got] == [h.id for h in full if h.score >= cut] and len(got) >= 8
    # more results than the first search asks for (64): the search grows until the scores drop below
    assert len(engine) > 64
    assert [h.id for h in engine.search_vector(engine.vector(0), min_score=-1)] == [h.id for h in full]
    # with k and offset too: a window of the results at or above it
    assert [h.id for h in engine.search_id(0, 3, offset=2, min_score=cut)] == \
        [h.id for h in full if h.score >= cut and h.id != 0][2:5]


def test_one_positive_id_is_more_like_this(engine):
    assert engine.search_examples([3], k=8) == engine.search_id(3, 8)
    assert engine.search_examples([Example.of_id(3)], k=8) == engine.search_id(3, 8)


def test_rocchio_is_the_renormalised_weighted_mean_minus_negatives(engine):
    a, b, c = (int(i) for i in engine.ids[[2, 9, 20]])
    va, vb, vc = (engine.vector(i) for i in (a, b, c))
    query = _unit((2 * va + vb) / 3 - NEGATIVE_WEIGHT * vc)
    got = engine.search_examples([Example.of_id(a, weight=2), Example.of_vector(vb)], [c], k=10)
    cos = _cosines(engine, query)
    expected = sorted((i for i in cos if i not in (a, c)), key=lambda i: -cos[i])[:10]  # b came as a vector
    assert [h.id for h in got] == expected
    assert [h.score for h in got] == pytest.approx([cos[i] for i in expected], abs=1e-5)  # cosines to it


def test_best_scores_each_candidate_by_its_best_positive(engine):
    a, b, c = (int(i) for i in engine.ids[[2, 40, 9]])
    ca, cb = _cosines(engine, engine.vector(a)), _cosines(engine, engine.vector(b))
    best = {i: max(ca[i], 0.5 * cb[i]) for i in ca if i not in (a, b)}
    got = engine.search_examples([a, Example.of_id(b, weight=0.5)], strategy="best", k=12)
    assert [h.id for h in got] == sorted(best, key=lambda i: (-best[i], i))[:12]
    assert [h.score for h in got] == pytest.approx([best[h.id] for h in got], abs=1e-5)

    # a negative drops every candidate more like it than like its best positive; the rest keep their scores
    cc = _cosines(engine, engine.vector(c))
    kept = {i: s for i, s in best.items() if i != c and cc[i] <= s}
    assert len(kept) < len(best) - 1  # the negative does drop some
    got = engine.search_examples([a, Example.of_id(b, weight=0.5)], [c], strategy="best", k=12)
    assert [h.id for h in got] == sorted(kept, key=lambda i: (-kept[i], i))[:12]

    # min_score under best: every candidate whose best positive score reaches it
    cut = sorted(best.values())[-15]
    got = engine.search_examples([a, Example.of_id(b, weight=0.5)], strategy="best", min_score=cut)
    assert sorted(h.id for h in got) == sorted(i for i, s in best.items() if s >= cut)


def test_an_image_example_is_embedded(engine, corpus):
    rocket = corpus / "photos" / "rocket.jpg"
    assert [h.id for h in engine.search_examples([rocket], k=5)] == [h.id for h in engine.search_image(rocket, 5)]


@pytest.mark.parametrize("call, error, message", [
    (lambda e: e.search_examples([]), InvalidInputError, "at least one positive example"),
    (lambda e: e.search_examples([], [1]), InvalidInputError, "at least one positive example"),
    (lambda e: e.search_examples([1], strategy="worst"), InvalidInputError, "strategy must be one of rocchio, best"),
    (lambda e: e.search_examples([10 ** 6]), UnknownIdError, "no image with id 1000000"),
    (lambda e: e.search_examples([Example.of_id(1, weight=0)]), InvalidInputError, "weight must be a number"),
    (lambda e: e.search_examples([Example.of_id(1, weight=float("nan"))]), InvalidInputError, "weight"),
    (lambda e: e.search_examples([[1.0, 2.0]]), InvalidInputError, f"needs ({DIM},)"),
    (lambda e: e.search_examples([True]), InvalidInputError, "an indexed id, a vector or an image"),
    (lambda e: e.search_examples([Example.of_vector([0.0] * DIM)]), InvalidInputError, "positive[0]: query vector is all zeros"),
    (lambda e: e.search_id(0, min_score=1.5), InvalidInputError, "min_score must be a number from -1 to 1"),
    (lambda e: e.search_id(0, min_score="high"), InvalidInputError, "min_score must be a number from -1 to 1"),
    (lambda e: e.search_id(0, offset=-1), InvalidInputError, f"offset must be an integer between 0 and {MAX_K - 1}"),
    (lambda e: e.search_vector(e.vector(0), offset=MAX_K), InvalidInputError, "offset must be an integer"),
])
def test_bad_examples_and_windows_say_what_to_change(engine, call, error, message):
    with pytest.raises(error) as info:
        call(engine)
    assert message in str(info.value)


def _cli(*args):
    return subprocess.run([IMGSEARCH, "search", *args], capture_output=True, text=True, timeout=300, env=fake_model_env())


def _in_process(*args):
    """``imgsearch ARGS`` run by click in this process (the same command, a second to spare per run)."""
    from click.testing import CliRunner

    from imgsearch.web.cli import main

    return CliRunner().invoke(main, list(args))


@pytest.mark.parametrize("value", ["9" * 400, "-" + "9" * 400, "1e400", "\u0663", "-5", "nan"])
def test_cli_example_values_that_are_neither_id_nor_file_are_one_line(built_index, value):
    """A value too long to be a file name (the OS refuses to look it up: ENAMETOOLONG) or a number that is no id
    is one error line, never a traceback, for --like, --unlike, IMAGES and explain's QUERY and RESULT."""
    index_dir = str(built_index[0])
    runs = [["search", "--index", index_dir, "--like", value],
            ["search", "--index", index_dir, "--like", "1", "--unlike", value],
            ["search", "--index", index_dir, "--", value], ["explain", "--index", index_dir, "--", value, "1"]]
    for args in runs:
        r = _in_process(*args)
        assert r.exit_code in (1, 2) and isinstance(r.exception, SystemExit), (args, r.output, r.exception)
        assert r.stderr.strip().splitlines()[-1].startswith("Error:"), r.stderr


def test_the_console_script_prints_such_a_value_as_one_line(built_index):
    """The same through the installed ``imgsearch`` in a child process: one line on stderr, no traceback."""
    r = _cli("--index", str(built_index[0]), "--like", "9" * 400)
    assert r.returncode in (1, 2) and "Traceback" not in r.stderr, r.stderr
    assert r.stderr.strip().splitlines()[-1].startswith("Error:"), r.stderr


def test_cli_like_and_unlike_take_ids_and_image_files(engine, built_index, corpus):
    index_dir = str(built_index[0])
    rocket, coffee = corpus / "photos" / "rocket.jpg", corpus / "photos" / "coffee.jpg"
    # IMAGES and --like (an id, a file) are the positives, --unlike the negatives: one query
    expected = engine.search_examples([rocket, 7, coffee], [12], k=5, offset=1, min_score=0.0)
    r = _cli("--index", index_dir, str(rocket), "--like", "7", "--like", str(coffee), "--unlike", "12", "-k", "5",
             "--offset", "1", "--min-score", "0", "--json")
    assert r.returncode == 0, r.stderr
    answer = json.loads(r.stdout)
    assert [h["id"] for h in answer["results"]] == [h.id for h in expected] and len(expected) == 5

    # best, plain text, ids only (no model to load); the rest in this process: the child above is the console script
    r = _in_process("search", "--index", index_dir, "--like", "7", "--like", "30", "--strategy", "best", "-k", "3")
    assert r.exit_code == 0, r.output
    best = engine.search_examples([7, 30], strategy="best", k=3)
    assert [line.split("(id ")[1].rstrip(")") for line in r.stdout.splitlines()[1:]] == [str(h.id) for h in best]

    for args, message in ((["--like", str(10 ** 6)], "no image with id 1000000"),
                          (["--like", "no-such-file.jpg"], "neither an indexed id nor an image file"),
                          (["--unlike", "3"], "at least one positive example"),
                          (["--like", "3", "--min-score", "2"], "--min-score must be a number from -1 to 1")):
        r = _in_process("search", "--index", index_dir, *args)
        assert r.exit_code != 0 and isinstance(r.exception, SystemExit), (args, r.output, r.exception)
        assert r.stderr.strip().splitlines()[-1].startswith("Error:") and message in r.stderr, r.stderr

import io
import json

import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image

from imgsearch.indexer.folder.store import IndexFormatError
from imgsearch.search.engine import Hit, SearchEngine, UnknownIdError
from imgsearch.web.cli import main
from tests.pixel_model import DIM, NAME


def test_search_image_every_input_kind_finds_itself(engine, corpus):
    path = corpus / "photos" / "chelsea.jpg"
    data = path.read_bytes()
    for query in (path, str(path), data, io.BytesIO(data), Image.open(io.BytesIO(data))):
        hits = engine.search_image(query, k=5)
        assert len(hits) == 5 and isinstance(hits[0], Hit)
        assert hits[0].path == str(path) and hits[0].label == "photos"
        assert hits[0].score == pytest.approx(1.0, abs=1e-4)
        assert [h.score for h in hits] == sorted((h.score for h in hits), reverse=True)


def test_similar_images_rank_above_unrelated(cnn_engine, corpus):
    """What the CNN's neighbours mean: the real model."""
    # a flag emoji's nearest neighbours are mostly other flags
    flag = sorted((corpus / "emoji" / "Flags").glob("*.png"))[0]
    hits = cnn_engine.search_image(flag, k=4)[1:]
    assert sum(h.label == "emoji/Flags" for h in hits) >= 2, hits
    # a photo slightly changed (crop + JPEG) still finds its original first
    img = Image.open(corpus / "photos" / "coffee.jpg").crop((20, 10, 580, 390))
    buf = io.BytesIO()
    img.save(buf, "JPEG", quality=70)
    assert cnn_engine.search_image(buf.getvalue(), k=1)[0].path.endswith("coffee.jpg")


def test_search_vector_and_id(engine):
    target = engine.search_image(engine.get(0).path, k=1)[0]
    assert target.id == 0
    vec = engine.vector(0)
    assert vec.shape == (DIM,)
    hits = engine.search_vector(vec * 7.5, k=3)  # scale does not matter: normalised first
    assert hits[0].id == 0 and hits[0].score == pytest.approx(1.0, abs=1e-4)
    by_id = engine.search_id(0, k=3)
    assert [h.id for h in by_id] == [h.id for h in engine.search_vector(vec, k=4)[1:]]
    assert 0 not in [h.id for h in by_id]  # "more like this" leaves out the query


def test_errors_are_clear(engine):
    with pytest.raises(UnknownIdError, match="no image with id 999999"):
        engine.search_id(999999)
    with pytest.raises(ValueError, match=rf"needs \({DIM},\)"):
        engine.search_vector(np.ones(512))
    with pytest.raises(ValueError, match="NaN"):
        engine.search_vector(np.full(DIM, np.nan))
    for k in (0, 1001, 2.5, True):
        with pytest.raises(ValueError, match="k must be"):
            engine.search_vector(np.ones(DIM), k=k)


def test_open_refuses_other_backbone_and_non_index(built_index, tmp_path):
    index_dir, _ = built_index
    with pytest.raises(IndexFormatError, match=f"built with backbone {NAME}, not efficientnet-lite2"):
        SearchEngine.open(index_dir, backbone="efficientnet-lite2")
    with pytest.raises(IndexFormatError, match="not an imgsearch index"):
        SearchEngine.open(tmp_path)


def test_k_larger_than_index(engine):
    assert len(engine.search_vector(engine.vector(1), k=1000)) == len(engine)


def test_cli_search_json_and_info(built_index, corpus):
    index_dir, summary = built_index
    runner = CliRunner()
    q1, q2 = corpus / "photos" / "rocket.jpg", corpus / "photos" / "astronaut.jpg"
    result = runner.invoke(main, ["search", "--index", str(index_dir), str(q1), str(q2), "-k", "3", "--json"])
    assert result.exit_code == 0, result.output
    lines = [json.loads(line) for line in result.output.strip().splitlines()]
    assert [o["query"] for o in lines] == [str(q1), str(q2)]
    assert all(len(o["results"]) == 3 for o in lines)
    assert set(lines[0]["results"][0]) == {"id", "path", "label", "score"}
    assert lines[0]["results"][0]["path"] == str(q1)

    result = runner.invoke(main, ["search", "--index", str(index_dir), str(q1), "-k", "2"])
    assert result.exit_code == 0 and "rocket.jpg" in result.output and "1." in result.output

    result = runner.invoke(main, ["info", "--index", str(index_dir)])
    assert result.exit_code == 0
    assert f"images:     {summary.total}" in result.output and NAME in result.output


def test_cli_errors(built_index, corpus, tmp_path):
    index_dir, _ = built_index
    runner = CliRunner()
    result = runner.invoke(main, ["search", "--index", str(tmp_path), str(corpus / "photos" / "rocket.jpg")])
    assert result.exit_code == 1 and "not an imgsearch index" in result.output
    result = runner.invoke(main, ["search", "--index", str(index_dir), str(corpus / "bad" / "notes.jpg")])
    assert result.exit_code == 1 and "not an image" in result.output
    result = runner.invoke(main, ["index", str(tmp_path / "nowhere"), "--index", str(tmp_path / "i")])
    assert result.exit_code == 1 and "no such file or folder" in result.output

"""``box`` in explain is honoured or refused, never ignored (issue 30, item 12): a bad box is 400 ``invalid_box``
on every surface (HTTP, Python engine, client, CLI) before a model is loaded or an image decoded.  That a good
box is honoured (the region's score explained) needs the CNN: tests/web/test_explain.py (slow).  These run on
the fake model, which has no feature maps, so any answer past the box check would be an error of another kind.
"""

from __future__ import annotations

import json

import pytest
import requests
from click.testing import CliRunner
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from imgsearch.search.client.http_client import SearchAPIError, SearchClient
from imgsearch.search.errors import InvalidBoxError
from imgsearch.search.query.regions import parse_box
from imgsearch.web.cli import main

BAD_BOXES = ["garbage", "", "1,2,3", [0.5, 0.5, 0.1, 0.1], [0, 0, 2, 1], [True, 0, 1, 1], [0, 0, 1], {"x0": 0},
             5, [0, 0, 0, 0], ["a", "b", "c", "d"], "nan,0,1,1", "0,0,1,inf", [[0], 0, 1, 1], [-0.1, 0, 1, 1]]


def _explain(server, **kwargs):
    return requests.post(f"{server.url}/api/explain", timeout=30, **kwargs)


@pytest.mark.parametrize("box", BAD_BOXES, ids=repr)
def test_a_bad_box_is_400_invalid_box_over_http(live_server, box):
    r = _explain(live_server, json={"query": {"id": 0}, "id": 1, "box": box})
    assert r.status_code == 400, r.text
    assert r.json()["error"]["code"] == "invalid_box" and "box" in r.json()["error"]["message"]
    form = box if isinstance(box, str) else json.dumps(box)
    r = _explain(live_server, files={"image": ("q.png", b"not looked at")}, data={"id": "1", "box": form})
    assert r.status_code == 400 and r.json()["error"]["code"] == "invalid_box", r.text


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(box=st.one_of(st.text(max_size=30), st.lists(st.floats(allow_nan=False, allow_infinity=False), max_size=5),
                     st.lists(st.one_of(st.integers(-2, 2), st.booleans(), st.none(), st.text(max_size=3)), max_size=5),
                     st.integers(-2 ** 63 + 1, 2 ** 63 - 1), st.none()))  # wider: the body's 400 (test_numbers)
def test_any_box_parse_box_refuses_is_refused_by_explain(live_server, box):
    try:
        parse_box(box)
    except InvalidBoxError:
        refused = True
    else:
        refused = False
    body = {"query": {"id": 0}, "id": 1, **({} if box is None else {"box": box})}
    r = _explain(live_server, json=body)
    code = r.json()["error"]["code"] if r.status_code != 200 else None
    assert (code == "invalid_box") == (refused and box is not None), (box, r.text)


def test_the_engine_refuses_a_bad_box_before_loading_a_model(engine):
    ids = [int(i) for i in engine.ids[:2]]
    for box in BAD_BOXES:
        with pytest.raises(InvalidBoxError):
            engine.explain(ids[0], ids[1], box=box)  # the fake model has no maps: any other path fails otherwise


def test_the_client_refuses_a_bad_box_before_sending(live_server):
    client = SearchClient(live_server.url)
    for box in ("garbage", [0.5, 0.5, 0.1, 0.1]):
        with pytest.raises(SearchAPIError) as raised:
            client.explain(0, 1, box=box)
        assert raised.value.code == "invalid_box" and raised.value.status is None  # not sent


def test_the_cli_refuses_a_bad_box_in_one_line(built_index):
    result = CliRunner().invoke(main, ["explain", "--index", str(built_index[0]), "0", "1", "--box", "garbage"])
    assert result.exit_code != 0
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert len(lines) == 1 and "box must be" in lines[0] and "Traceback" not in result.output, result.output


_DECODES_IN_THREADS = r"""
import sys, threading
import numpy as np
from PIL import Image
import io
from imgsearch.indexer.inputs.images import decode_image

def rss_mb():
    return next(int(l.split()[1]) for l in open("/proc/self/status") if l.startswith("VmRSS")) / 1024

y, x = np.mgrid[0:4500, 0:4500]
buf = io.BytesIO()
Image.fromarray(np.stack([x % 256, y % 256, (x + y) % 256], -1).astype(np.uint8)).save(buf, "PNG", compress_level=1)
data = buf.getvalue()
del x, y
before = rss_mb()
lock = threading.Lock()
def decode():
    with lock:  # one at a time, each in its own thread, as server threads take turns under a decode slot
        decode_image(data, 224, 50_000_000)
threads = [threading.Thread(target=decode) for _ in range(6)]
for t in threads: t.start()
for t in threads: t.join()
print(round(rss_mb() - before))
"""


@pytest.mark.slow  # 5 s of CPU or more with its child processes (tests/cpu_report.py)
def test_decoding_a_huge_image_gives_its_memory_back_whatever_thread_decoded_it(tmp_path):
    """What explains of huge uploads kept: each server thread's malloc arena held its peak (2.9 GB for 8
    threads explaining 49 MP PNGs one at a time, scripts/bench_explain_memory.py); now blocks are mapped."""
    import subprocess
    import sys

    out = subprocess.run([sys.executable, "-c", _DECODES_IN_THREADS], capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    kept = int(out.stdout.strip().splitlines()[-1])
    assert kept < 60, f"{kept} MB kept after six 20 MP decodes in six threads"

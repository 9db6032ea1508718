"""scripts/load_test.py against a real server on loopback: a short run, every request checked."""

import importlib.util
import sys

import pytest

from tests.helpers import ROOT

SCRIPT = ROOT / "scripts" / "load_test.py"


@pytest.fixture(scope="module")
def load_test():
    spec = importlib.util.spec_from_file_location("load_test", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    sys.modules["load_test"] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    yield module
    del sys.modules["load_test"]


def test_short_load_run_has_no_failures(load_test, live_server, built_index):
    result = load_test.run_load(live_server.url, clients=4, duration=3, k=5)
    summary = result.summary()
    assert result.failed == 0, result.failures[:5]
    for kind in ("image", "id", "vector"):
        row = summary["kinds"][kind]
        assert row["requests"] > 3 and row["p50_ms"] <= row["p99_ms"] <= row["max_ms"]
    assert summary["kinds"]["all"]["requests"] == result.requests > 20
    text = "\n".join(result.lines())
    assert f"{result.requests} requests in" in text and "failed: 0" in text


def test_failed_requests_are_counted(load_test, live_server):
    material = load_test.fetch_material(live_server.url)
    material.ids = [10**9]  # not in the index: every by-id query gets 404
    result = load_test.run_load(live_server.url, clients=2, duration=1, mix={"id": 1, "vector": 1},
                                material=material)
    assert result.failed == len(result.failures) > 0
    assert all(kind == "id" and "HTTP 404" in what for kind, what in result.failures)
    assert result.latencies["vector"] and not result.latencies["id"]


def test_refuses_other_hosts(load_test):
    with pytest.raises(SystemExit, match="loopback"):
        load_test.run_load("http://192.0.2.1:8000", clients=1, duration=1)

"""Duplicates as a job over HTTP on a real loopback server (web/duplicates_jobs.py): started, polled through its
stages to a result equal to GET /api/duplicates, reused for the same options, cancelled, bounded, refused with
400 and 404; the client's methods; the OpenAPI document names every route and status the routes give."""

from __future__ import annotations

import pytest
import requests

from imgsearch.search.client.http_client import SearchAPIError, SearchClient
from imgsearch.search.errors import DuplicatesCancelledError
from tests.helpers import LiveServer, VerificationGate, wait_until
from tests.pixel_model import DUP_THRESHOLD

JOBS = "/api/duplicates/jobs"


@pytest.fixture
def server(dup_server):
    return dup_server  # tests/conftest.py: a fresh server over the shared duplicates index


@pytest.fixture
def gate(monkeypatch):
    held = VerificationGate(monkeypatch)
    yield held
    held.release()  # whatever the test did: no thread left waiting


def _job(server, job_id, **params):
    r = requests.get(f"{server.url}{JOBS}/{job_id}", params=params, timeout=30)
    assert r.status_code == 200, r.text
    return r.json()


def _finished(server, job_id, **params):
    return wait_until(lambda: (b := _job(server, job_id, **params))["state"] != "running" and b,
                      what="the job to finish")


def _without_timing(body: dict) -> dict:
    return {k: v for k, v in body.items() if k != "took_ms"}


def test_a_job_reports_its_stages_and_ends_with_the_same_groups_as_get(server, gate):
    r = requests.post(server.url + JOBS, json={"threshold": DUP_THRESHOLD, "keep": "largest"}, timeout=30)
    assert r.status_code == 202, r.text
    job = r.json()
    assert job["state"] == "running" and r.headers["Location"].endswith(f"{JOBS}/{job['id']}")
    gate.entered.wait(60)
    held = wait_until(lambda: (b := _job(server, job["id"]))["stage"] == "verifying" and b, what="verifying")
    assert held["state"] == "running" and 0 <= held["done"] < held["total"] and "result" not in held
    # the same options while it runs: the same job, never a second computation
    again = requests.post(server.url + JOBS, json={"threshold": DUP_THRESHOLD, "keypoints": True}, timeout=30)
    assert again.status_code == 202 and again.json()["id"] == job["id"]
    gate.release()
    done = _finished(server, job["id"], limit=4)
    assert done["state"] == "done" and done["stage"] == "grouping" and done["done"] == done["total"]
    plain = requests.get(server.url + "/api/duplicates", params={"threshold": DUP_THRESHOLD, "limit": 4}, timeout=60)
    assert _without_timing(done["result"]) == _without_timing(plain.json())
    assert done["result"]["total"] == 6 and len(done["result"]["groups"]) == 4
    for group in done["result"]["groups"]:  # what the page shows of each member
        assert [set(s) for s in group["sizes"]] == [{"width", "height", "file_size"}] * len(group["ids"])
        assert all(s["width"] > 0 and s["height"] > 0 and s["file_size"] > 0 for s in group["sizes"])
    # done: asking again answers the finished job at once, 200, with any page of its result
    later = requests.post(server.url + JOBS, json={"threshold": DUP_THRESHOLD}, params={"offset": 4}, timeout=30)
    assert later.status_code == 200 and later.json()["id"] == job["id"]
    assert [g["group"] for g in later.json()["result"]["groups"]] == [5, 6]


def test_a_report_already_computed_is_a_finished_job_at_once(server):
    requests.get(server.url + "/api/duplicates", params={"threshold": 0.95, "keypoints": "false"}, timeout=60)
    r = requests.post(server.url + JOBS, json={"threshold": 0.95, "keypoints": False}, timeout=30)
    assert r.status_code == 200 and r.json()["state"] == "done" and r.json()["stage"] is None
    assert r.json()["result"]["threshold"] == 0.95 and r.json()["result"]["keypoints"] is False


def test_a_cancelled_job_stops_and_caches_nothing(server, gate):
    job = requests.post(server.url + JOBS, json={"threshold": DUP_THRESHOLD}, timeout=30).json()
    gate.entered.wait(60)
    r = requests.delete(f"{server.url}{JOBS}/{job['id']}", timeout=30)
    assert r.status_code == 200 and r.json()["state"] == "cancelled"
    gate.release()
    engine = server.app.extensions["imgsearch"].current()
    # the thread stops at its next unit of work, and leaves no report behind
    wait_until(lambda: not engine.duplicate_reports._lock.locked(), what="the computation to stop")
    assert engine.duplicate_reports.cached(engine, DUP_THRESHOLD, None, True) is None
    assert _job(server, job["id"])["state"] == "cancelled"
    # a new start is a new job (a cancelled one is never reused), and it runs to the end
    fresh = requests.post(server.url + JOBS, json={"threshold": DUP_THRESHOLD}, timeout=30).json()
    assert fresh["id"] != job["id"]
    assert _finished(server, fresh["id"])["state"] == "done"
    # cancelling a finished job leaves it done
    assert requests.delete(f"{server.url}{JOBS}/{fresh['id']}", timeout=30).json()["state"] == "done"


def test_finished_jobs_are_dropped_oldest_first_and_running_ones_are_capped(server, gate):
    server.app.extensions["imgsearch_duplicates_jobs"].max_jobs = 2
    ids = []
    for threshold in (0.97, 0.98, 0.99):  # scores only: nothing to verify, the gate is not met
        job = requests.post(server.url + JOBS, json={"threshold": threshold, "keypoints": False}, timeout=30).json()
        assert _finished(server, job["id"])["state"] == "done"
        ids.append(job["id"])
    r = requests.get(f"{server.url}{JOBS}/{ids[0]}", timeout=30)
    assert r.status_code == 404 and r.json()["error"]["code"] == "unknown_job"
    assert _job(server, ids[2])["state"] == "done"
    held = [requests.post(server.url + JOBS, json={"threshold": t}, timeout=30) for t in (0.91, 0.93, 0.94)]
    assert [r.status_code for r in held] == [202, 202, 503]  # two running (one queued behind the other): full
    assert held[2].json()["error"]["code"] == "busy" and "cancel one" in held[2].json()["error"]["message"]
    assert held[2].headers["Retry-After"]


def test_starts_and_cancels_in_a_loop_never_pile_up_threads(server, gate):
    server.app.extensions["imgsearch_duplicates_jobs"].max_jobs = 3
    codes = []
    for threshold in (0.91, 0.93, 0.94, 0.95, 0.96):  # each cancelled at once; the first is held verifying
        r = requests.post(server.url + JOBS, json={"threshold": threshold}, timeout=30)
        codes.append(r.status_code)
        if len(codes) == 1:
            assert gate.entered.wait(60)  # the first computation is held verifying before it is cancelled
        if r.status_code == 202:
            assert requests.delete(f"{server.url}{JOBS}/{r.json()['id']}", timeout=30).json()["state"] == "cancelled"
    # cancelled jobs whose threads still wait (behind the held computation) count: the fourth start is refused
    assert codes == [202, 202, 202, 503, 503]
    gate.release()
    jobs = server.app.extensions["imgsearch_duplicates_jobs"]
    wait_until(lambda: not any(t.is_alive() for t in jobs._threads), what="the cancelled threads to end")
    assert requests.post(server.url + JOBS, json={"threshold": 0.97}, timeout=30).status_code == 202


@pytest.mark.parametrize("body, params, code, message", [
    ({"threshold": 0}, {}, "invalid_threshold", "threshold must be a number above 0 and at most 1"),
    ({"threshold": "abc"}, {}, "invalid_threshold", "threshold"),
    ({"threshold": 10 ** 400}, {}, "invalid_json", "the JSON body"),  # the strict JSON reader: never an overflow
    ({"keep": "biggest"}, {}, "invalid_keep", "keep must be one of largest, smallest, oldest, newest"),
    ({"keypoints": "maybe"}, {}, "invalid_keypoints", "keypoints must be true or false"),
    ([0.9], {}, "invalid_json", "must be a JSON object"),
    ({}, {"limit": "0"}, "invalid_limit", "limit"),
])
def test_bad_options_are_400_and_start_nothing(server, body, params, code, message):
    r = requests.post(server.url + JOBS, json=body, params=params, timeout=30)
    assert r.status_code == 400, r.text
    assert r.json()["error"]["code"] == code and message in r.json()["error"]["message"]
    assert server.app.extensions["imgsearch_duplicates_jobs"]._jobs == {}


@pytest.mark.parametrize("data", [b"{not json", b"[" * 100000 + b"]" * 100000, b"\xff\xfe"])
def test_a_body_that_is_not_json_is_400(server, data):
    r = requests.post(server.url + JOBS, data=data, headers={"Content-Type": "application/json"}, timeout=30)
    assert r.status_code == 400 and r.json()["error"]["code"] == "invalid_json", r.text


@pytest.mark.parametrize("method", ["get", "delete"])
@pytest.mark.parametrize("job_id", ["0123456789abcdef0123456789abcdef", "nope", "..%2F..%2Fetc", "x" * 5000])
def test_an_unknown_job_is_404_with_a_message(server, method, job_id):
    r = getattr(requests, method)(f"{server.url}{JOBS}/{job_id}", timeout=30)
    assert r.status_code == 404, r.text
    assert r.json()["error"]["code"] in ("unknown_job", "not_found")
    if r.json()["error"]["code"] == "unknown_job":
        assert "start one with POST /api/duplicates/jobs" in r.json()["error"]["message"]


def test_the_client_starts_polls_and_cancels_jobs(server, gate):
    with SearchClient(server.url, timeout=30) as client:
        job = client.start_duplicates_job(threshold=DUP_THRESHOLD)
        assert job.state == "running" and job.stage in ("queued", "pairs", "verifying")
        gate.entered.wait(60)
        assert client.cancel_duplicates_job(job.id).state == "cancelled"
        with pytest.raises(SearchAPIError) as raised:
            client.duplicates_job("no-such-job")
        assert raised.value.status == 404 and raised.value.code == "unknown_job"
        gate.release()
        seen = []
        page = client.duplicates(threshold=DUP_THRESHOLD, limit=4, progress=lambda *s: seen.append(s), poll=0.05)
        assert (page.total, len(page)) == (6, 4) and seen and seen[-1][1] == seen[-1][2]
        assert all(len(g.sizes) == len(g.ids) for g in page)
        assert page.groups == client.duplicates(threshold=DUP_THRESHOLD, limit=4).groups  # the job reused
        assert client.duplicates_job(job.id).state == "cancelled"


def test_a_job_cancelled_by_another_caller_raises_in_the_client(server, gate):
    import threading

    with SearchClient(server.url, timeout=30) as client:
        outcome = {}

        def wait_for_it():
            try:
                client.duplicates(threshold=DUP_THRESHOLD, poll=0.05)
            except DuplicatesCancelledError as exc:
                outcome["error"] = exc

        waiting = threading.Thread(target=wait_for_it)
        waiting.start()
        gate.entered.wait(60)
        jobs = server.app.extensions["imgsearch_duplicates_jobs"]
        only = wait_until(lambda: list(jobs._jobs), what="the client's job")[0]
        requests.delete(f"{server.url}{JOBS}/{only}", timeout=30)
        waiting.join(60)
        assert "was cancelled on the server" in str(outcome["error"])


def test_the_openapi_document_names_every_job_route_and_status(server):
    spec = requests.get(server.url + "/api/openapi.json", timeout=30).json()
    rules = [r for r in server.app.url_map.iter_rules() if r.endpoint.startswith("duplicates_jobs.")]
    assert len(rules) == 3
    for rule in rules:
        path = rule.rule.replace("<job_id>", "{id}")
        for method in rule.methods - {"HEAD", "OPTIONS"}:
            assert method.lower() in spec["paths"][path], (path, method)
    post = spec["paths"][JOBS]["post"]["responses"]
    assert {"200", "202", "400", "503"} <= set(post)
    assert {"200", "404"} <= set(spec["paths"][JOBS + "/{id}"]["get"]["responses"])
    assert {"200", "404"} <= set(spec["paths"][JOBS + "/{id}"]["delete"]["responses"])
    job = spec["components"]["schemas"]["DuplicatesJob"]
    assert set(job["properties"]["state"]["enum"]) == {"running", "done", "cancelled", "failed"}
    assert "sizes" in spec["components"]["schemas"]["DuplicateGroup"]["properties"]


def test_off_loopback_a_read_key_starts_and_cancels_jobs_and_no_key_does_not(dup_index, tmp_path, gate):
    """Jobs change nothing in the index: reads, by the key rules (web/auth.py), not writes."""
    from imgsearch.web import create_app
    from imgsearch.web.keys import KeyStore

    store = KeyStore(tmp_path / "keys.json")
    read, _ = store.create("read", "reader")
    live = LiveServer(create_app({"INDEX_DIR": str(dup_index[0]), "WARM_UP": False, "RELOAD_INTERVAL": None,
                                  "KEYS_FILE": str(store.path), "REQUIRE_KEY": True}))
    live.app.config["BOUND_HOST"] = "0.0.0.0"
    try:
        bare = requests.post(live.url + JOBS, json={}, timeout=30)
        assert bare.status_code == 401 and bare.json()["error"]["code"] == "key_required"
        auth = {"Authorization": f"Bearer {read}"}
        started = requests.post(live.url + JOBS, json={}, headers=auth, timeout=30)
        assert started.status_code == 202, started.text
        job_url = f"{live.url}{JOBS}/{started.json()['id']}"
        assert requests.get(job_url, timeout=30).status_code == 401
        gone = requests.delete(job_url, headers=auth, timeout=30)
        assert gone.status_code == 200 and gone.json()["state"] == "cancelled"
    finally:
        gate.release()
        live.close()


@pytest.mark.parametrize("raised, code, words", [
    (RuntimeError("secret /srv/path in a bug"), "internal_error", "the server log says why"),
    ("damaged", "shard_damaged", "shard-00001.parquet"),
])
def test_a_job_that_fails_says_why_in_the_error_contract_and_nothing_internal(server, monkeypatch, raised, code,
                                                                             words):
    from imgsearch.search.duplicates import groups
    from imgsearch.search.errors import DamagedShardError

    if raised == "damaged":
        raised = DamagedShardError("shard shard-00001.parquet is damaged (cut short): repair it with imgsearch "
                                   "verify --repair")

    def fails(*args, **kwargs):
        raise raised

    monkeypatch.setattr(groups, "_find", fails)
    job = requests.post(server.url + JOBS, json={}, timeout=30).json()
    failed = _finished(server, job["id"])
    assert failed["state"] == "failed" and "result" not in failed
    assert failed["error"]["code"] == code and words in failed["error"]["message"]
    assert "/srv/path" not in str(failed)
    # a failed job is not reused: the next start tries again
    assert requests.post(server.url + JOBS, json={}, timeout=30).json()["id"] != job["id"]


def test_ctrl_c_while_the_client_waits_cancels_the_job_on_the_server(server, gate):
    def interrupted(stage, done, total):
        raise KeyboardInterrupt  # as Ctrl-C arrives while the caller's progress callback runs

    with SearchClient(server.url, timeout=30) as client:
        with pytest.raises(KeyboardInterrupt):
            client.duplicates(threshold=DUP_THRESHOLD, progress=interrupted)
    jobs = list(server.app.extensions["imgsearch_duplicates_jobs"]._jobs.values())
    assert [j.state for j in jobs] == ["cancelled"]

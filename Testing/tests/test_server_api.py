"""The report server against a real uvicorn on 127.0.0.1 with the tiny CPU model: submit, stream, cancel, bad
payloads (each with its 4xx, the server keeps serving), back-pressure, batching, timeouts, shutdown, auth."""

from __future__ import annotations

import json
import threading
import time
from types import SimpleNamespace

import numpy as np
import pytest

pytest.importorskip("torch")
pytest.importorskip("fastapi")
pytest.importorskip("uvicorn")
httpx = pytest.importorskip("httpx")

from hypothesis import HealthCheck, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

from MedRegionCTLib.anatomy import load_schema  # noqa: E402
from MedRegionCTLib.anatomy.regions import RegionMask  # noqa: E402
from MedRegionCTLib.client import RemoteReporter, ReportClient  # noqa: E402
from MedRegionCTLib.client.codec import CONTENT_TYPE, MAGIC, read_header  # noqa: E402
from MedRegionCTLib.errors import CancelledError, InputError, ServerError  # noqa: E402
from MedRegionCTLib.model.tiny import synthetic_case  # noqa: E402
from MedRegionCTLib.progress import CancelToken  # noqa: E402
from MedRegionCTLib.server.app import ServerSettings, create_app  # noqa: E402
from MedRegionCTLib.server.engine import load_engine, write_tiny_checkpoint  # noqa: E402
from MedRegionCTLib.server.jobs import JobManager, ShuttingDown  # noqa: E402
from MedRegionCTLib.server.run import ServerThread, check_exposure, load_api_keys  # noqa: E402

LIMIT = 512 * 1024
KEY = "k" * 8 + "-test-api-key-0123456789"


class Gate:
    """Wraps the real engine; while the gate is closed, a batch waits before it reaches the model (so tests can
    hold jobs in the queue or in the worker)."""

    def __init__(self, engine):
        self.engine = engine
        self.open = threading.Event()
        self.open.set()
        self.entered = threading.Event()
        self.batches: list[int] = []

    def __getattr__(self, name):
        return getattr(self.engine, name)

    def generate(self, prepared, on_region=None, progress=None, cancel=None):
        self.entered.set()
        self.batches.append(len(prepared))
        while not self.open.wait(0.05):
            if cancel is not None and cancel():
                from MedRegionCTLib.errors import CancelledError

                raise CancelledError("cancelled while gated")
        return self.engine.generate(prepared, on_region=on_region, progress=progress, cancel=cancel)


@pytest.fixture(scope="module")
def engine(tmp_path_factory):
    folder = write_tiny_checkpoint(tmp_path_factory.mktemp("ckpt") / "tiny")
    return load_engine(str(folder), device="cpu")


@pytest.fixture(scope="module")
def gate(engine):
    return Gate(engine)


@pytest.fixture(scope="module")
def server(gate):
    app = create_app(gate, ServerSettings(max_request_bytes=LIMIT, max_queue=3, max_batch=4, job_timeout_s=60))
    with ServerThread(app) as srv:
        yield srv


@pytest.fixture()
def client(server, gate):
    gate.open.set()
    with ReportClient(server.url, timeout=20, retries=1, backoff=0.05) as c:
        yield c


def make_case(seed=3, empty_breast=True):
    case = synthetic_case(seed)
    regions = case["regions"]
    case["regions"] = {"lung": regions["lung"], "heart": regions["heart"], "trachea and bronchie": regions["trachea"]}
    if empty_breast:
        case["regions"]["breast"] = np.zeros_like(regions["lung"])
    case["names"] = {"lung": "Lung", "heart": "Heart"}
    case["attributes"] = {"lung": ["A nodule is identified in the left lung.", "It measures 6 mm."]}
    return case


def post(url, body, **headers):
    return httpx.post(url + "/v1/jobs", content=body, headers={"Content-Type": CONTENT_TYPE, **headers}, timeout=20)


def test_model_info_and_openapi(server, client):
    info = client.model_info()
    assert info["schema"]["name"] == "radgenome10" and len(info["schema"]["regions"]) == 10
    assert info["payload"]["format_version"] == 1
    assert info["input"]["arrays"]["image"] == [16, 16, 8]
    assert info["limits"]["max_request_bytes"] == LIMIT
    assert info["model"]["version"].startswith("sha256:")
    assert any("clip HU" in line for line in info["preprocessing"])
    schema = httpx.get(server.url + "/openapi.json").json()
    for path in ("/v1/health", "/v1/model", "/v1/jobs", "/v1/jobs/{job_id}", "/v1/jobs/{job_id}/events",
                 "/v1/jobs/{job_id}/result"):
        assert path in schema["paths"], path
    assert CONTENT_TYPE in schema["paths"]["/v1/jobs"]["post"]["requestBody"]["content"]


def test_submit_stream_and_result(client):
    case = make_case()
    body = client.encode(case)
    header, _ = read_header(body)
    assert set(header) <= {"format", "format_version", "schema", "keys", "names", "attributes", "empty", "arrays"}
    assert header["attributes"]["lung"] == "A nodule is identified in the left lung. It measures 6 mm."
    job = client.submit(body)
    events = list(client.events(job))
    kinds = [k for k, _ in events]
    assert kinds[0] == "status" and kinds[-1] == "result"
    streamed = {d["key"]: d["paragraph"] for k, d in events if k == "region"}
    assert sorted(streamed) == ["heart", "lung", "trachea and bronchie"]
    result = client.result(job)
    assert {k: v["paragraph"] for k, v in result["regions"].items()} == streamed
    assert result["empty"] == ["breast"]
    assert all(v["paragraph"] for v in result["regions"].values())
    status = client.status(job)
    assert status["state"] == "done" and status["progress"] == 1.0
    # resuming the stream after the second event replays only what came after it
    again = list(client.events(job, after=2))
    assert again == events[2:]


def test_report_with_progress_and_regions_callback(client):
    seen, regions = [], []
    result = client.report(make_case(4), progress=lambda f, m: seen.append(f),
                           on_region=lambda key, value: regions.append(key))
    assert sorted(regions) == sorted(result["regions"])
    assert seen[0] == 0.0 and seen[-1] == 1.0 and seen == sorted(seen)


def test_cancel_queued_and_running_jobs(client, gate):
    gate.open.clear()
    gate.entered.clear()
    running = client.submit(make_case(5))
    assert gate.entered.wait(10)
    queued = client.submit(make_case(6))
    assert client.status(queued)["state"] == "queued"
    assert client.cancel(queued)["state"] == "cancelled"
    assert client.cancel(running)["state"] == "cancelled"
    gate.open.set()
    kinds = [k for k, _ in client.events(running)]
    assert kinds[-1] == "cancelled"
    with pytest.raises(ServerError) as err:
        client.result(running)
    assert err.value.status == 409 and err.value.code == "job_cancelled"
    # a cancel token cancels the job on the server and raises CancelledError
    gate.open.clear()
    token = CancelToken()
    threading.Timer(0.3, token.set).start()
    with pytest.raises(CancelledError):
        client.report(make_case(7), cancel=token)
    gate.open.set()
    # the server keeps serving
    assert client.report(make_case(8))["regions"]


def test_concurrent_cases_are_batched(client, gate):
    gate.open.clear()
    gate.entered.clear()
    gate.batches.clear()
    first = client.submit(make_case(9))
    assert gate.entered.wait(10)
    others = [client.submit(make_case(10 + i)) for i in range(3)]
    gate.open.set()
    for job in [first, *others]:
        assert client.wait(job)["regions"]
    assert gate.batches[:2] == [1, 3]


def test_full_queue_answers_429_with_retry_after(server, client, gate):
    gate.open.clear()
    gate.entered.clear()
    body = client.encode(make_case(11))
    jobs = [client.submit(body)]
    assert gate.entered.wait(10)
    jobs += [client.submit(body) for _ in range(3)]  # max_queue = 3
    response = post(server.url, body)
    assert response.status_code == 429, response.text
    assert int(response.headers["Retry-After"]) >= 1
    assert response.json()["error"]["code"] == "queue_full"
    with ReportClient(server.url, retries=0) as impatient, pytest.raises(ServerError) as err:
        impatient.submit(body)
    assert err.value.status == 429
    gate.open.set()
    for job in jobs:
        assert client.wait(job)["state"] == "done"


def _raw(client):
    header, buffers = read_header(client.encode(make_case(12)))
    return header, bytes(buffers)


def _join(header, buffers):
    head = json.dumps(header).encode()
    return MAGIC + len(head).to_bytes(4, "little") + head + buffers


BAD = {
    "wrong shape": (lambda h, b: h["arrays"]["masks"].update(shape=[3, 16, 16, 4]), 422, "wrong_shape"),
    "wrong dtype": (lambda h, b: h["arrays"]["slices"].update(encoding="uint64"), 422, "wrong_dtype"),
    "truncated": (lambda h, b: _join(h, b)[:-37], 400, "truncated"),
    "oversized": (lambda h, b: _join(h, b) + b"\0" * LIMIT, 413, "too_large"),
    "wrong schema": (lambda h, b: h.update(schema="medregion6"), 422, "schema_mismatch"),
    "wrong format version": (lambda h, b: h.update(format_version=2), 400, "unsupported_format_version"),
    "missing key": (lambda h, b: h.pop("arrays"), 422, "missing_field"),
    "wrong key": (lambda h, b: h["keys"].__setitem__(0, "liver"), 422, "unknown_region"),
    "not a payload": (lambda h, b: b"{\"keys\": []}", 400, "bad_magic"),
}


@pytest.mark.parametrize("name", list(BAD))
def test_bad_payload_gets_its_4xx_and_the_server_keeps_serving(server, client, name):
    change, status, code = BAD[name]
    header, buffers = _raw(client)
    out = change(header, buffers)
    response = post(server.url, out if isinstance(out, bytes) else _join(header, buffers))
    assert response.status_code == status, response.text
    error = response.json()["error"]
    assert error["code"] == code and error["message"]
    assert client.health()["status"] == "ok"
    assert client.report(make_case(13))["state"] == "done"


def test_request_errors(server, client):
    body = client.encode(make_case(14))
    assert post(server.url, body, **{"Content-Type": "application/json"}).status_code == 415
    assert httpx.get(server.url + "/v1/jobs/" + "0" * 32).status_code == 404
    assert httpx.get(server.url + "/v1/jobs/../../etc/passwd").status_code == 404
    with pytest.raises(ServerError, match="no job"):
        client.status("f" * 32)
    response = post(server.url, body, **{"Idempotency-Key": "same-key"})
    again = post(server.url, body, **{"Idempotency-Key": "same-key"})
    assert response.status_code == again.status_code == 202
    assert response.json()["job_id"] == again.json()["job_id"]
    with pytest.raises(InputError, match="schema"):
        case = make_case()
        case["regions"]["liver"] = case["regions"]["lung"]
        client.encode(case)


HTTP_FUZZ = settings(max_examples=40, deadline=None, suppress_health_check=list(HealthCheck))


@pytest.fixture(scope="module")
def fuzz_body(server):
    with ReportClient(server.url) as c:
        return c.encode(make_case(15))


@HTTP_FUZZ
@given(data=st.data())
def test_fuzzed_payloads_never_get_a_500(server, fuzz_body, data):
    body = bytearray(fuzz_body)
    for position, value in data.draw(st.lists(st.tuples(st.integers(0, len(body) - 1), st.integers(0, 255)),
                                              max_size=6)):
        body[position] = value
    cut = data.draw(st.integers(0, len(body)))
    response = post(server.url, bytes(body[:cut]))
    assert response.status_code in (202, 400, 413, 422, 429), response.text
    assert "error" in response.json() or response.status_code == 202


# --- auth --------------------------------------------------------------------------------------------------------
def test_api_keys_are_required_and_checked(gate, tmp_path):
    app = create_app(gate, ServerSettings(api_keys=(KEY,), max_request_bytes=LIMIT))
    with ServerThread(app) as srv:
        assert httpx.get(srv.url + "/v1/health").status_code == 200  # liveness stays open
        denied = httpx.get(srv.url + "/v1/model")
        assert denied.status_code == 401 and denied.headers["WWW-Authenticate"].startswith("Bearer")
        wrong = httpx.get(srv.url + "/v1/model", headers={"Authorization": "Bearer " + KEY[:-1] + "x"})
        assert wrong.status_code == 401 and KEY not in wrong.text
        with ReportClient(srv.url) as anonymous, pytest.raises(ServerError, match="API key"):
            anonymous.model_info()
        with ReportClient(srv.url, api_key=KEY) as c:
            assert c.report(make_case(16))["state"] == "done"


def test_exposure_rules(tmp_path, monkeypatch):
    check_exposure("127.0.0.1", (), tls=False)
    check_exposure("::1", (), tls=False)
    with pytest.raises(InputError, match="without API keys"):
        check_exposure("0.0.0.0", (), tls=False)
    check_exposure("0.0.0.0", (KEY,), tls=True)
    short = tmp_path / "keys.txt"
    short.write_text("# comment\nshort\n")
    with pytest.raises(InputError, match="shorter"):
        load_api_keys(short)
    good = tmp_path / "good.txt"
    good.write_text(f"# team keys\n{KEY}\n\n")
    assert load_api_keys(good) == (KEY,)
    import argparse

    from MedRegionCTLib.cli import serve as serve_cli

    parser = argparse.ArgumentParser()
    serve_cli.add_parser(parser.add_subparsers())
    args = parser.parse_args(["serve", "--model", "tiny", "--host", "0.0.0.0", "--port", "1"])
    with pytest.raises(InputError, match="without API keys"):  # refused before the model is loaded
        args.func(args)


def test_api_key_from_environment(server, monkeypatch):
    monkeypatch.setenv("MEDREGIONCT_API_KEY", KEY)
    with ReportClient(server.url) as c:
        assert c._http.headers["Authorization"] == f"Bearer {KEY}"


# --- queue internals: timeouts and graceful shutdown -----------------------------------------------------------
def _manager(gate, **options):
    manager = JobManager(gate, gate.spec(LIMIT), **options)
    manager.start()
    return manager


def _body(engine):
    from MedRegionCTLib.client.codec import encode_case
    from MedRegionCTLib.model.preprocess import prepare_case

    case = make_case(17, empty_breast=False)
    config = engine.model.config
    return encode_case(prepare_case(case, config.preprocess, config.needed_inputs()), "radgenome10")


def _submit(manager, body):
    return manager.submit(body, ["lung", "heart", "trachea and bronchie"], [])


def test_jobs_past_their_deadline_fail_with_timeout(gate, engine):
    gate.open.clear()
    manager = _manager(gate, job_timeout_s=0.5, max_batch=1)
    try:
        jobs = [_submit(manager, _body(engine)) for _ in range(2)]
        end = time.monotonic() + 10
        while not all(j.terminal for j in jobs) and time.monotonic() < end:
            time.sleep(0.05)
        assert [j.error["code"] for j in jobs] == ["timeout", "timeout"]  # one running, one queued
    finally:
        gate.open.set()
        manager.drain(5)


def test_graceful_shutdown_finishes_or_fails_every_job(gate, engine):
    manager = _manager(gate, max_batch=2)
    jobs = [_submit(manager, _body(engine)) for _ in range(3)]
    manager.drain(30)
    assert [j.state for j in jobs] == ["done"] * 3  # time enough: all finished
    gate.open.clear()
    manager = _manager(gate, max_batch=1)
    try:
        jobs = [_submit(manager, _body(engine)) for _ in range(3)]
        manager.drain(0.3)  # not enough time: every job is failed explicitly, none is left hanging
        assert all(j.terminal for j in jobs)
        assert {j.error["code"] for j in jobs} == {"shutdown"}
        with pytest.raises(ShuttingDown):
            _submit(manager, _body(engine))
    finally:
        gate.open.set()


# --- the remote reporter ------------------------------------------------------------------------------------------
def test_remote_reporter_writes_one_region_report_per_schema_region(server, client):
    from MedRegionCTLib.pipeline.analyze import get_reporter

    schema = load_schema("radgenome10")
    case = make_case(18)
    masks = case["regions"]
    shape = case["volume"].shape
    regions = [RegionMask(region=r, mask=masks.get(r.key, np.zeros(shape, bool))) for r in schema.regions]
    volume = SimpleNamespace(array=case["volume"], affine=case["affine"])
    measurements = SimpleNamespace(sentences={"lung": ["A nodule is identified in the left lung."]})
    report_case = SimpleNamespace(volume=volume, schema=schema, regions=regions, measurements=measurements)
    reporter = get_reporter("server:" + server.url)
    assert isinstance(reporter, RemoteReporter)
    out = reporter.write(report_case)
    assert [r.key for r in out] == schema.keys
    by_key = {r.key: r for r in out}
    for key in ("lung", "heart", "trachea and bronchie"):
        assert by_key[key].status == "assessed" and by_key[key].sentences
        assert by_key[key].sentences[0].evidence.masks == [f"region:{key}"]
    assert by_key["bone"].status == "not_assessed" and not by_key["bone"].sentences
    assert reporter.settings()["model_version"].startswith("sha256:")
    wrong = SimpleNamespace(**{**report_case.__dict__, "schema": SimpleNamespace(name="medregion6")})
    with pytest.raises(InputError, match="schema"):
        reporter.write(wrong)


def test_server_shutdown_fails_waiting_jobs_explicitly_to_their_clients(gate):
    gate.open.clear()
    gate.entered.clear()
    app = create_app(gate, ServerSettings(max_request_bytes=LIMIT, drain_timeout_s=0.3))
    srv = ServerThread(app, drain_timeout_s=0.3).start()
    outcome = {}
    with ReportClient(srv.url, retries=0) as c:
        body = c.encode(make_case(19))

        def follow():
            try:
                outcome["result"] = c.report(body)
            except ServerError as exc:
                outcome["error"] = exc

        thread = threading.Thread(target=follow)
        thread.start()
        assert gate.entered.wait(10)
        srv.stop()
        thread.join(20)
    gate.open.set()
    assert "shut down" in str(outcome["error"]) and outcome["error"].code == "shutdown"


@pytest.mark.slow
def test_analyze_with_the_server_reporter(server):
    from MedRegionCTLib.phantom import make_phantom
    from MedRegionCTLib.pipeline import analyze

    phantom = make_phantom("tiny")
    analysis = analyze(phantom.volume, labelmap=phantom.labels, reporter="server:" + server.url)
    report = analysis.report
    assert report.provenance.reporter == "server"
    assert [r.key for r in report.regions] == load_schema("radgenome10").keys
    assert any(r.status == "assessed" and r.sentences for r in report.regions)
    assert report.provenance.settings["reporter"]["model_version"].startswith("sha256:")


def test_client_prepares_again_when_its_cached_model_description_is_stale(server):
    with ReportClient(server.url) as c:
        info = c.model_info()
        stale = json.loads(json.dumps(info))
        stale["preprocess"]["grid"] = [8, 8, 8]  # as if the server had been restarted with another model
        c._info = stale
        result = c.report(make_case(20))
        assert result["state"] == "done"
        assert c.model_info()["preprocess"]["grid"] == [16, 16, 8]

"""`hmgnn serve` over real HTTP: a uvicorn subprocess on a loopback port, every endpoint and bad input, the same
answers as `hmgnn recommend`, and a hot reload under traffic (plus the 500 handler and the CLI in-process)."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import numpy as np
import polars as pl
import pytest
import torch

from hmgnn import artifacts as A
from hmgnn import recommend, serve, train
from hmgnn.cli import main
from hmgnn.config import load_config

from tables_fixture import FAST_TRAIN as FAST

STARTUP_TIMEOUT = 60


@pytest.fixture(scope="module")
def workdir(trained_workdir) -> Path:
    return trained_workdir


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Server:
    """`python -m hmgnn.cli serve` in a subprocess; its output goes to a file (a full pipe would stall it)."""

    def __init__(self, workdir: Path, log: Path, *args: str) -> None:
        self.port = _free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log = log
        with log.open("w") as out:
            self.proc = subprocess.Popen([sys.executable, "-m", "hmgnn.cli", "serve", "--workdir", str(workdir),
                                          "--port", str(self.port), *args], stdout=out, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + STARTUP_TIMEOUT
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"server exited with {self.proc.returncode}:\n{log.read_text()[-3000:]}")
            try:
                if httpx.get(f"{self.url}/health", timeout=2).status_code == 200:
                    return
            except httpx.TransportError:
                time.sleep(0.2)
        self.stop()
        raise RuntimeError(f"no /health within {STARTUP_TIMEOUT} s:\n{log.read_text()[-3000:]}")

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


@pytest.fixture(scope="module")
def server(workdir, tmp_path_factory):
    srv = Server(workdir, tmp_path_factory.mktemp("log") / "gnn.log")  # serve.model = auto: the trained gnn
    yield srv
    srv.stop()


@pytest.fixture(scope="module")
def http(server):
    with httpx.Client(base_url=server.url, timeout=30) as client:
        yield client


@pytest.fixture(scope="module")
def people(workdir) -> dict[str, str]:
    """A customer with purchases, one without (known to the id maps) and an id nobody has."""
    customers = pl.read_parquet(workdir / "tables" / A.CUSTOMERS_PARQUET)
    buyers = set(pl.read_parquet(workdir / "tables" / A.TRANSACTIONS_PARQUET)["customer_index"].to_list())
    known = customers.filter(pl.col("known"))
    warm = known.filter(pl.col("customer_index").is_in(list(buyers)))["customer_id"]
    cold = known.filter(~pl.col("customer_index").is_in(list(buyers)))["customer_id"]
    assert len(cold), "the fixture should leave some customers without purchases"
    return {"warm": warm[0], "warm2": warm[1], "cold": cold[0], "unknown": "ab" * 32}


def _recommend_cli(workdir: Path, customer_id: str, k: int = 12) -> dict:
    cfg = load_config(None, [f"recommend.k={k}"], workdir=workdir)  # recommend.model = auto, as serve's
    return recommend.run(cfg, customer_id=customer_id).to_dict()


def _pairs(recs: dict) -> list[tuple[str, float]]:
    return [(r["article_id"], r["score"]) for r in recs["recommendations"]]


# ---- health and docs ---------------------------------------------------------------------------------------
def test_health_names_the_model_its_fingerprint_and_the_data(http, workdir):
    body = http.get("/health").json()
    assert body["status"] == "ok" and body["model"] == "gnn"
    assert body["model_fingerprint"] == A.fingerprint(workdir / "model" / A.MODEL_PT)
    assert body["data_fingerprint"] == A.fingerprint(workdir / "tables" / A.TRANSACTIONS_PARQUET)
    last_day = pl.read_parquet(workdir / "tables" / A.TRANSACTIONS_PARQUET)["t_dat"].max()
    assert body["as_of"] == last_day.isoformat()
    assert (body["customers"], body["articles"]) == (402, 152)  # 400 + 2 unknown, 150 + 2 unknown


def test_openapi_docs(http):
    assert http.get("/docs").status_code == 200 and "swagger" in http.get("/docs").text.lower()
    spec = http.get("/openapi.json").json()
    assert {"/health", "/recommendations/{customer_id}", "/recommendations", "/articles/{article_id}/similar",
            "/admin/reload"} <= set(spec["paths"])
    assert "Recommendations" in spec["components"]["schemas"]


# ---- one customer ------------------------------------------------------------------------------------------
@pytest.mark.parametrize("who", ["warm", "warm2", "cold", "unknown"])
def test_same_answer_as_hmgnn_recommend(http, workdir, people, who):
    got = http.get(f"/recommendations/{people[who]}").json()
    expected = _recommend_cli(workdir, people[who])
    assert got["model"] == expected["model"] == "gnn"  # by default both answer with the trained gnn
    assert _pairs(got) == _pairs(expected)  # article ids and scores, in order
    assert got["fallback"] == expected["fallback"] and got["cold_start"] == (who in ("cold", "unknown"))
    assert got["recommendations"][0].keys() == expected["recommendations"][0].keys()


def test_recommendation_fields(http, people):
    body = http.get(f"/recommendations/{people['warm']}", params={"k": 5}).json()
    assert body["model"] == "gnn" and body["k"] == 5 and body["fallback"] is None and not body["cold_start"]
    recs = body["recommendations"]
    assert [r["rank"] for r in recs] == [1, 2, 3, 4, 5]
    assert all(len(r["article_id"]) == 10 and r["article_id"].isdigit() for r in recs)
    assert {"prod_name", "product_type_name", "colour_group_name", "score"} <= recs[0].keys()
    scores = [r["score"] for r in recs]
    assert scores == sorted(scores, reverse=True)


def test_unknown_customer_gets_flagged_bestsellers(http, people):
    body = http.get(f"/recommendations/{people['unknown']}").json()
    assert body["cold_start"] and "not in tables/customers.parquet" in body["fallback"]
    assert len(body["recommendations"]) == 12


def test_ids_are_case_insensitive(http, people):
    upper = http.get(f"/recommendations/{people['warm'].upper()}").json()
    assert upper["customer_id"] == people["warm"]
    assert _pairs(upper) == _pairs(http.get(f"/recommendations/{people['warm']}").json())


def test_filter_bought_drops_purchases(http, workdir, people):
    customers = pl.read_parquet(workdir / "tables" / A.CUSTOMERS_PARQUET)
    index = customers.filter(pl.col("customer_id") == people["warm"])["customer_index"].item()
    bought_index = (pl.read_parquet(workdir / "tables" / A.TRANSACTIONS_PARQUET)
                    .filter(pl.col("customer_index") == index)["article_index"].unique().to_list())
    articles = pl.read_parquet(workdir / "tables" / A.ARTICLES_PARQUET)
    bought = {f"{a:010d}" for a in articles.filter(pl.col("article_index").is_in(bought_index))["article_id"]}
    got = http.get(f"/recommendations/{people['warm']}", params={"k": 100, "filter_bought": "true"}).json()
    assert not bought & {r["article_id"] for r in got["recommendations"]}
    assert len(got["recommendations"]) == min(100, 152 - len(bought))


@pytest.mark.parametrize("model", ["gnn", "gnn-retrieval"])
def test_ranked_together_is_the_one_customer_answer(workdir, people, model):
    """The scorer ranks concurrent GETs as one batch: each answer must be the one-customer answer, bit for bit, in
    the JSON FastAPI would write for it (same members in the same order)."""
    served = serve.load(load_config(None, [f"serve.model='{model}'"], workdir=workdir))
    # the GNN alone ranks its customers with history by `rank_dense`, in one batch here; the two-stage gnn ranks
    # the candidates of the requests alike (same k, same filter) in one call
    assert served.dense == (model == "gnn-retrieval")
    ids = pl.read_parquet(workdir / "tables" / A.CUSTOMERS_PARQUET)["customer_id"].to_list()[:40]
    ids += [people["warm"], people["cold"], people["unknown"], people["warm"]]
    rng = np.random.default_rng(0)
    asks = [(cid, int(rng.integers(1, 101)), bool(rng.random() < 0.5)) for cid in ids]
    asks += [(cid, 12, n % 3 == 0) for n, cid in enumerate(ids)]  # two large groups of alike requests
    for ask, body in zip(asks, served.recommend_json(asks)):
        one = served._recommendations(ask[0], ask[1], *recommend.rank_customer(
            served.model, served.customer_index(ask[0]), ask[1], ask[2]))
        documented = serve.Recommendations.model_validate(one).model_dump_json()
        assert json.loads(body) == json.loads(documented), ask
        assert [list(r) for r in json.loads(body)["recommendations"]] == \
            [list(r) for r in json.loads(documented)["recommendations"]]


def test_kept_candidates_give_the_same_answers(workdir, people):
    """serve.keep_candidates computes every customer's GNN candidates at load: the answers must not change."""
    plain = serve.load(load_config(None, ["serve.model='gnn'"], workdir=workdir))
    kept = serve.load(load_config(None, ["serve.model='gnn'", "serve.keep_candidates=true"], workdir=workdir))
    assert kept.model.gnn._kept is not None and plain.model.gnn._kept is None
    ids = pl.read_parquet(workdir / "tables" / A.CUSTOMERS_PARQUET)["customer_id"].to_list()[:60]
    asks = [(cid, 12, n % 2 == 0) for n, cid in enumerate(ids + [people["warm"], people["cold"], people["unknown"]])]
    assert kept.recommend_json(asks) == plain.recommend_json(asks)
    assert [kept.recommend_json([a]) for a in asks[:10]] == [plain.recommend_json([a]) for a in asks[:10]]


def test_concurrent_requests_get_the_answers_of_sequential_ones(server, workdir, people):
    ids = pl.read_parquet(workdir / "tables" / A.CUSTOMERS_PARQUET)["customer_id"].to_list()[:30] + \
        [people["cold"], people["unknown"]]
    paths = [f"/recommendations/{cid}?k={1 + n % 20}&filter_bought={str(n % 3 == 0).lower()}"
             for n, cid in enumerate(ids)]
    with httpx.Client(base_url=server.url) as client:
        alone = [client.get(p).content for p in paths]

    def fetch(chunk: list[str]) -> list[bytes]:
        with httpx.Client(base_url=server.url) as client:
            return [client.get(p).content for p in chunk]

    with ThreadPoolExecutor(8) as pool:
        together = [b for chunk in pool.map(fetch, [paths[i::8] * 3 for i in range(8)]) for b in chunk]
    assert together == [b for i in range(8) for b in alone[i::8] * 3]


class _Picky:
    """Fails every batch that holds the id 'bad'."""

    def recommend_json(self, asks):
        if any(cid == "bad" for cid, _, _ in asks):
            raise ValueError("bad")
        return [cid.encode() for cid, _, _ in asks]


def test_one_failing_request_does_not_fail_its_batch():
    picky = _Picky()
    a, bad, b = serve.Scorer._answer([(picky, (cid, 12, False), None, None) for cid in ["a", "bad", "b"]])
    assert (a, b) == (b"a", b"b") and isinstance(bad, ValueError)

    async def ask_all() -> list:  # and through the scorer thread, however the requests fall into batches
        scorer = serve.Scorer()
        return await asyncio.gather(*(scorer.recommend(picky, cid, 12, False) for cid in ["a", "bad", "b"]),
                                    return_exceptions=True)

    a, bad, b = asyncio.run(ask_all())
    assert (a, b) == (b"a", b"b") and isinstance(bad, ValueError)


# ---- batches -----------------------------------------------------------------------------------------------
def test_batch_matches_single_requests(http, people):
    ids = [people["warm"], people["unknown"], people["cold"], people["warm2"].upper()]
    body = http.post("/recommendations", json={"customer_ids": ids, "k": 6}).json()
    assert body["model"] == "gnn" and len(body["results"]) == 4
    for cid, result in zip(ids, body["results"]):
        single = http.get(f"/recommendations/{cid}", params={"k": 6}).json()
        assert result["customer_id"] == cid.lower() and result["fallback"] == single["fallback"]
        assert [a for a, _ in _pairs(result)] == [a for a, _ in _pairs(single)]
        assert np.allclose([s for _, s in _pairs(result)], [s for _, s in _pairs(single)], atol=1e-4)


def test_batch_bounds(http, people):
    full = http.post("/recommendations", json={"customer_ids": [people["warm"]] * 1000, "k": 1})
    assert full.status_code == 200 and len(full.json()["results"]) == 1000
    over = http.post("/recommendations", json={"customer_ids": [people["warm"]] * 1001})
    assert over.status_code == 413 and "at most 1,000" in over.json()["detail"]
    huge = http.post("/recommendations", content=b'{"customer_ids": ["' + b"a" * 300_000 + b'"]}',
                     headers={"content-type": "application/json"})
    assert huge.status_code == 413 and "bytes" in huge.json()["detail"]
    assert http.post("/recommendations", json={"customer_ids": []}).json()["results"] == []


# ---- similar articles --------------------------------------------------------------------------------------
def test_similar_articles_by_cosine(http, workdir):
    model, _ = recommend.fit_model(load_config(None, [], workdir=workdir), "gnn")
    emb = torch.nn.functional.normalize(model.embeddings()[1], dim=1).numpy()
    article_ids = pl.read_parquet(workdir / "tables" / A.ARTICLES_PARQUET).sort("article_index")["article_id"].to_list()
    a = 7
    cos = emb @ emb[a]
    cos[a] = -np.inf
    expected = [f"{article_ids[i]:010d}" for i in np.argsort(-cos, kind="stable")[:5]]
    body = http.get(f"/articles/{article_ids[a]:010d}/similar", params={"k": 5}).json()
    assert body["article"]["article_id"] == f"{article_ids[a]:010d}" and body["model"] == "gnn"
    assert [r["article_id"] for r in body["similar"]] == expected
    assert np.allclose([r["score"] for r in body["similar"]], np.sort(cos)[::-1][:5], atol=1e-5)
    # leading zeros are optional
    assert http.get(f"/articles/{article_ids[a]}/similar", params={"k": 5}).json() == body


def test_similar_unknown_article_is_404(http):
    r = http.get("/articles/9999999999/similar")
    assert r.status_code == 404 and "9999999999 is not in tables/articles.parquet" in r.json()["detail"]


# ---- bad input: 4xx with a one-line message, never a 500 or a traceback -------------------------------------
GOOD = "ab" * 32


@pytest.mark.parametrize("method, path, payload, status, words", [
    ("GET", "/recommendations/xyz", None, 422, "64 hexadecimal characters"),
    ("GET", f"/recommendations/{'g' * 64}", None, 422, "64 hexadecimal characters"),
    ("GET", f"/recommendations/{'a' * 63}", None, 422, "64 hexadecimal characters"),
    ("GET", f"/recommendations/{'a' * 5000}", None, 422, "64 hexadecimal characters"),
    ("GET", "/recommendations/%20%00;drop", None, 422, "64 hexadecimal characters"),
    ("GET", f"/recommendations/{GOOD}?k=0", None, 422, "k: Input should be greater than or equal to 1"),
    ("GET", f"/recommendations/{GOOD}?k=10001", None, 422, "k: Input should be less than or equal to 10000"),
    ("GET", f"/recommendations/{GOOD}?k=153", None, 422, "k must be from 1 to 152 (the 152 articles"),
    ("GET", f"/recommendations/{GOOD}?k=abc", None, 422, "k: Input should be a valid integer"),
    ("GET", f"/recommendations/{GOOD}?filter_bought=maybe", None, 422, "filter_bought"),
    ("GET", "/articles/abc/similar", None, 422, "up to 10 digits"),
    ("GET", "/articles/12345678901/similar", None, 422, "up to 10 digits"),
    ("GET", "/articles/-5/similar", None, 422, "up to 10 digits"),
    ("GET", "/articles/108775015/similar?k=10001", None, 422, "k: Input should be less than or equal to 10000"),
    ("GET", "/articles/108775015/similar?k=153", None, 422, "k must be from 1 to 152"),
    ("GET", "/articles/108775015/similar?k=0", None, 422, "k: Input should be greater than or equal to 1"),
    ("POST", "/recommendations", {"customer_ids": [GOOD, "nope"]}, 422, "customer_ids[1]: customer id must be 64"),
    ("POST", "/recommendations", {"customer_ids": [GOOD], "k": 20000}, 422, "k: Input should be less than or equal"),
    ("POST", "/recommendations", {"customer_ids": [GOOD], "k": 500}, 422, "k must be from 1 to 152"),
    ("POST", "/recommendations", {"customer_ids": [1, 2]}, 422, "customer_ids.0: Input should be a valid string"),
    ("POST", "/recommendations", {"ids": [GOOD]}, 422, "customer_ids: Field required"),
    ("POST", "/recommendations", "{not json", 422, "JSON decode error"),
])
def test_bad_input_is_a_clear_4xx(http, method, path, payload, status, words):
    if isinstance(payload, str):
        r = http.request(method, path, content=payload, headers={"content-type": "application/json"})
    else:
        r = http.request(method, path, json=payload)
    assert r.status_code == status, r.text
    detail = r.json()["detail"]
    assert isinstance(detail, str) and words in detail and "Traceback" not in r.text
    assert len(detail) < 300


def test_busy_port_is_one_error_line(workdir):
    with socket.socket() as held:
        held.bind(("127.0.0.1", 0))
        held.listen()
        port = held.getsockname()[1]
        done = subprocess.run([sys.executable, "-m", "hmgnn.cli", "serve", "--workdir", str(workdir), "--port",
                               str(port)], capture_output=True, text=True, timeout=120)
    assert done.returncode == 1, done.stderr
    assert done.stderr.strip() == (f"error: port {port} on 127.0.0.1 is already in use (another server?); pass "
                                   "--port with a free port, or stop the program that holds it")


# ---- a baseline has no embeddings -------------------------------------------------------------------------
def test_baseline_serves_but_has_no_similar_articles(workdir, tmp_path):
    srv = Server(workdir, tmp_path / "popular.log", "--model", "popular")
    try:
        assert httpx.get(f"{srv.url}/health").json()["model_fingerprint"] is None
        r = httpx.get(f"{srv.url}/articles/108775015/similar")
        assert r.status_code == 409 and "--model gnn" in r.json()["detail"]
        assert httpx.get(f"{srv.url}/articles/9999999999/similar").status_code == 404  # unknown beats 409
        cid = pl.read_parquet(workdir / "tables" / A.CUSTOMERS_PARQUET)["customer_id"][0]
        cfg = load_config(None, ["recommend.model='popular'"], workdir=workdir)
        assert _pairs(httpx.get(f"{srv.url}/recommendations/{cid}").json()) == \
            _pairs(recommend.run(cfg, customer_id=cid).to_dict())
    finally:
        srv.stop()


# ---- hot reload (last: it retrains the shared workdir) -----------------------------------------------------
class Traffic:
    """Requests in a loop on another thread, to show that a reload drops none of them."""

    def __init__(self, url: str, customer_id: str) -> None:
        self.url, self.customer_id = url, customer_id
        self.statuses: list[int] = []
        self.done = threading.Event()
        self.thread = threading.Thread(target=self._loop, daemon=True)
        self.thread.start()

    def _loop(self) -> None:
        with httpx.Client(base_url=self.url, timeout=30) as client:
            while not self.done.is_set():
                try:
                    self.statuses.append(client.get(f"/recommendations/{self.customer_id}").status_code)
                except httpx.HTTPError:
                    self.statuses.append(-1)

    def stop(self) -> list[int]:
        self.done.set()
        self.thread.join(30)
        return self.statuses


def test_reload_failure_keeps_the_old_model(http, workdir, people):
    before = http.get("/health").json()
    checkpoint = workdir / "model" / A.MODEL_PT
    aside = checkpoint.with_name("model.pt.aside")
    checkpoint.rename(aside)
    try:
        r = http.post("/admin/reload")
        assert r.status_code == 409 and "still serving the previous model" in r.json()["detail"]
        assert "hmgnn train" in r.json()["detail"]
    finally:
        aside.rename(checkpoint)
    assert http.get("/health").json() == before
    assert http.get(f"/recommendations/{people['warm']}").status_code == 200


def test_reload_swaps_in_a_retrained_model_under_traffic(http, server, workdir, people):
    old = http.get("/health").json()
    traffic = Traffic(server.url, people["warm"])
    try:
        train.run(load_config(None, FAST + ["seed=7"], workdir=workdir))  # a new model.pt, written atomically
        r = http.post("/admin/reload")
        assert r.status_code == 200, r.text
        assert r.json()["previous_fingerprint"] == old["model_fingerprint"]
        time.sleep(0.3)  # some requests on the new model too
    finally:
        statuses = traffic.stop()
    new = http.get("/health").json()
    assert new["model_fingerprint"] == A.fingerprint(workdir / "model" / A.MODEL_PT) != old["model_fingerprint"]
    assert statuses and set(statuses) == {200}, f"{len(statuses)} requests: {sorted(set(statuses))}"
    # and the answers now come from the new model, still the same as `hmgnn recommend`
    assert _pairs(http.get(f"/recommendations/{people['warm']}").json()) == \
        _pairs(_recommend_cli(workdir, people["warm"]))


def test_sighup_reloads(http, server):
    before = http.get("/health").json()["loaded_at"]
    server.proc.send_signal(signal.SIGHUP)
    deadline = time.monotonic() + 30
    while http.get("/health").json()["loaded_at"] == before:
        assert time.monotonic() < deadline, "SIGHUP did not reload within 30 s"
        time.sleep(0.1)
    assert server.proc.poll() is None


# ---- in-process: what cannot be provoked from outside ------------------------------------------------------
class _Broken:
    name = "broken"

    def recommend_json(self, *args):
        raise RuntimeError("secret detail in /srv/internal/path")


@pytest.mark.filterwarnings("ignore:Using `httpx` with")  # starlette's TestClient asks for httpx2
def test_internal_errors_are_generic_500s():
    from fastapi.testclient import TestClient

    client = TestClient(serve.create_app(serve.ModelHolder(None, served=_Broken())), raise_server_exceptions=False)
    r = client.get(f"/recommendations/{GOOD}")
    assert r.status_code == 500
    assert r.json() == {"detail": "internal server error; the server log has the details"}
    assert "secret" not in r.text and "Traceback" not in r.text


@pytest.mark.filterwarnings("ignore:Using `httpx` with")
def test_reload_only_from_loopback():
    from fastapi.testclient import TestClient

    client = TestClient(serve.create_app(serve.ModelHolder(None, served=_Broken())))  # client host: "testclient"
    r = client.post("/admin/reload")
    assert r.status_code == 403 and "only accepted from this machine" in r.json()["detail"]


def test_cli_warns_when_serving_beyond_loopback(workdir, monkeypatch, capsys):
    calls = []
    monkeypatch.setattr(serve, "listen", lambda app, sock, **kw: calls.append(kw))
    monkeypatch.setattr(torch, "set_num_threads", lambda n: None)  # keep this test process as it was
    monkeypatch.setattr(serve.signal, "signal", lambda *args: None)
    main(["serve", "--workdir", str(workdir), "--model", "popular", "--host", "0.0.0.0", "--port", "8123"])
    assert calls and calls[0]["host"] == "0.0.0.0" and calls[0]["port"] == 8123
    err = " ".join(capsys.readouterr().err.split())  # rich wraps lines
    assert "warning: serving on 0.0.0.0" in err and "reachable from other machines" in err


def test_scorer_threads_are_half_the_cores_unless_set(workdir, monkeypatch):
    from hmgnn.errors import ConfigError
    from hmgnn.serve import scorer_threads

    with pytest.raises(ConfigError, match="serve.threads must be >= 0"):
        load_config(None, ["serve.threads=-1"], workdir=workdir)
    assert load_config(None, [], workdir=workdir).serve.threads == 0
    for cores, want in ((1, 1), (2, 1), (16, 8)):
        monkeypatch.setattr(os, "cpu_count", lambda cores=cores: cores)
        assert scorer_threads(0) == want
    assert scorer_threads(3) == 3


def test_cli_without_artifacts_is_one_line(tmp_path, capsys):
    with pytest.raises(SystemExit) as exit_:
        main(["serve", "--workdir", str(tmp_path)])
    assert exit_.value.code == 1
    err = capsys.readouterr().err
    assert "hmgnn ingest" in err and "Traceback" not in err

"""Every recommended article says why it ranks (`why`, a sentence) and which candidate sources proposed it
(`sources`): known answers for the baselines and the cold-start fallback, the two-stage gnn's sources checked
against each source alone, and the same why in the CLI's JSON, HTTP and the Python API; never in submission.csv."""

from __future__ import annotations

import datetime as dt
import json
import re
from pathlib import Path

import numpy as np
import polars as pl
import pytest
import torch
from typer.testing import CliRunner

import hmgnn
from hmgnn import artifacts as A
from hmgnn import recommend
from hmgnn.cli import app
from hmgnn.config import load_config
from hmgnn.interactions import Interactions
from hmgnn.registry import create_model
from hmgnn.ranking.candidates import SOURCES, candidate_pairs

AS_OF = dt.date(2020, 9, 22)


def label(article_index: int) -> str:
    return f"a{article_index}"


def whys(reasons) -> list[str]:
    return [r.why(label) for r in reasons]


# ---- known answers: the baselines and the cold-start fallback --------------------------------------------------
def shop() -> Interactions:
    """5 customers, 8 articles. Customer 0 bought article 3 three times (20, 12 and 5 days ago) and article 6 once,
    30 days ago; this week article 1 sold 3 times (to customers aged 30), article 2 twice (to customers aged 60);
    article 7 sold 40 days ago only; customer 4 (aged 30) never buys."""
    rows = [(0, 3, 20), (0, 3, 12), (0, 3, 5), (0, 6, 30),
            (1, 1, 1), (1, 1, 2), (2, 1, 3), (3, 2, 1), (3, 2, 4), (1, 7, 40)]
    c, a, d = (np.array(x) for x in zip(*rows))
    ages = np.array([40, 30, 30, 60, 30])
    return Interactions(c, a, np.datetime64(AS_OF, "D") - d, 5, 8, customer_age=ages)


def test_repurchase_says_how_often_and_when_the_customer_bought():
    model = create_model("repurchase").fit(shop(), AS_OF)
    ids, scores, reasons = model.recommend_explained(0, k=5)
    assert ids.tolist() == [3, 6, 1, 2, 7]  # ranking unchanged: own purchases, then last week's bestsellers
    assert (scores == model.recommend(0, k=5)[1]).all()
    assert whys(reasons) == ["bought 3 times, last on 2020-09-17", "bought once, on 2020-08-23",
                             "a bestseller this week", "a bestseller this week", "one of the best sellers of all time"]
    assert [r.sources for r in reasons] == [("bought",), ("bought",), ("popular",), ("popular",), ("popular",)]
    # many customers at once read the purchases grouped by customer: the same reasons
    many = np.repeat(np.arange(4), 3)
    assert model._by_customer is None
    assert model.explain(many, model.recommend(many, k=5)[0])[0] == reasons and model._by_customer is not None


def test_popular_and_trending_name_their_evidence():
    popular = create_model("popular").fit(shop(), AS_OF)
    _, _, reasons = popular.recommend_explained(0, k=4)
    assert whys(reasons) == ["a bestseller this week"] * 3 + ["one of the best sellers of all time"]
    assert {r.sources for r in reasons} == {("popular",)}

    trending = create_model("trending").fit(shop(), AS_OF)
    ids, _, reasons = trending.recommend_explained(0, k=8)
    got = dict(zip(ids.tolist(), reasons))
    # article 3: bought by the customer (their purchases weigh more than its trend) and sold lately; 6: bought 30
    # days ago, outside the 28-day trend
    assert got[3].why(label) == "bought 3 times, last on 2020-09-17" and got[3].sources == ("bought", "trending")
    assert got[6].why(label) == "bought once, on 2020-08-23" and got[6].sources == ("bought",)
    assert got[1].why(label) == "selling well over the last 28 days" and got[1].sources == ("trending",)
    assert got[7].why(label) == "one of the best sellers of all time"
    # customer 2 bought article 1 three days ago: its trend (the top, 1) weighs more than their purchase (~0.93)
    _, _, reasons = trending.recommend_explained(2, k=1)
    assert reasons[0].why(label) == "selling well over the last 28 days" and reasons[0].sources == ("trending", "bought")


def test_cold_and_unknown_customers_get_their_bestseller_list():
    model = create_model("repurchase").fit(shop(), AS_OF)
    ids, _, reasons = model.recommend_explained(4, k=3)  # aged 30, no purchase
    assert ids.tolist() == [1, 2, 3]  # the band's bestseller first, then everyone's
    assert whys(reasons) == ["a bestseller this week among customers aged 25-34", "a bestseller this week",
                             "a bestseller this week"]
    assert model.fallback_reason(4) is not None
    unknown = model.recommend_unknown(k=3)[0]
    assert whys(model.explain_unknown(unknown)) == ["a bestseller this week"] * 3
    assert whys(model.explain_unknown(model.recommend_unknown(k=3, age=61)[0], age=61))[0] == \
        "a bestseller this week among customers aged 55+"


def test_a_model_without_sources_says_its_score_ranked_it():
    model = create_model("rp3beta").fit(shop(), AS_OF)
    _, _, reasons = model.recommend_explained(0, k=3)
    assert whys(reasons) == ["ranked by the rp3beta model's score"] * 3 and {r.sources for r in reasons} == {()}


def test_variant_and_walk_name_the_bought_article_behind_them():
    from hmgnn.ranking.candidates import RandomWalk, candidate_reasons
    from hmgnn.ranking.features import ArticleMeta, Snapshot

    # customer 0 bought article 0 twice and 1 once, later (one product: 0, 1, 2), and article 5; the buyers of 5
    # (customers 1-3) also bought 7, the one buyer of 0 besides customer 0 (customer 4) bought 6
    rows = [(0, 0, 9), (0, 0, 8), (0, 1, 2), (0, 5, 3), (1, 5, 4), (1, 7, 1), (2, 5, 4), (2, 7, 2), (3, 5, 5),
            (3, 7, 3), (4, 0, 6), (4, 6, 1)]
    c, a, d = (np.array(x) for x in zip(*rows))
    inter = Interactions(c, a, np.datetime64(AS_OF, "D") - d, 5, 8)
    snapshot = Snapshot(inter, AS_OF, ArticleMeta(np.array([0, 0, 0, 1, 2, 3, 4, 5], np.int32), {}))
    variant, walk = 1 << SOURCES.index("variant"), 1 << SOURCES.index("walk")
    reasons = candidate_reasons(snapshot, 0, np.array([2, 7, 6, 1]), np.array([variant, walk, walk, walk | variant]),
                                {"variant": 5, "walk": 5}, None, RandomWalk(snapshot), "x")
    assert whys(reasons) == ["another colour of a0 that you bought",  # the most bought colour, not the latest
                             "also bought by customers who bought a5, as you did",
                             "also bought by customers who bought a0, as you did",
                             "bought once, on 2020-09-20"]  # a candidate the customer bought: their purchase first
    assert reasons[3].sources == ("variant", "walk")


# ---- the two-stage gnn in a trained workdir ------------------------------------------------------------------
@pytest.fixture(scope="module")
def workdir(trained_workdir) -> Path:
    return trained_workdir


@pytest.fixture(scope="module")
def fitted(workdir):
    model, _ = recommend.fit_model(load_config(None, [], workdir=workdir), "gnn")
    return model


@pytest.fixture(scope="module")
def tables(workdir) -> dict[str, pl.DataFrame]:
    folder = workdir / "tables"
    return {"purchases": pl.read_parquet(folder / A.TRANSACTIONS_PARQUET),
            "articles": pl.read_parquet(folder / A.ARTICLES_PARQUET).sort("article_index"),
            "customers": pl.read_parquet(folder / A.CUSTOMERS_PARQUET)}


def warm_customers(fitted, n: int = 60) -> np.ndarray:
    return np.flatnonzero(~fitted.is_cold(np.arange(fitted.n_customers)))[:n]


def test_the_answer_is_recommends_answer(fitted):
    customers = np.concatenate([warm_customers(fitted), np.flatnonzero(fitted.is_cold(np.arange(fitted.n_customers)))[:3]])
    customers = np.concatenate([customers, customers[:2]])  # a customer asked twice
    for filt in (False, True):
        ids, scores = fitted.recommend(customers, k=12, filter_already_bought=filt)
        got_ids, got_scores, reasons = fitted.recommend_explained(customers, k=12, filter_already_bought=filt)
        assert np.array_equal(ids, got_ids) and np.array_equal(scores, got_scores)
        assert [len(r) for r in reasons] == (ids >= 0).sum(1).tolist()
        # the bits carried from the ranking are the candidates found again for one customer
        assert reasons == fitted.explain(customers, ids)


def test_sources_are_exactly_the_sources_that_proposed_each_article(fitted):
    customers = warm_customers(fitted)
    ids, _, reasons = fitted.recommend_explained(customers, k=12)
    seen = set()
    for c, row, row_reasons in zip(customers, ids, reasons):
        proposed = {name: set(candidate_pairs(fitted.snapshot, np.array([c]), {name: fitted.sizes[name]},
                                              gnn=fitted.gnn, walk=fitted.walk,
                                              gnn_recent_days=fitted.gnn_recent_days).article.tolist())
                    for name in SOURCES if fitted.sizes.get(name, 0) > 0}
        for a, reason in zip(row.tolist(), row_reasons):
            assert set(reason.sources) == {name for name, articles in proposed.items() if a in articles}, (c, a)
            seen |= set(reason.sources)
    assert {"bought", "gnn", "popular"} <= seen  # the check covered several sources


def test_bought_articles_say_how_often_and_when(fitted, tables):
    customers = warm_customers(fitted)
    ids, _, reasons = fitted.recommend_explained(customers, k=12)
    bought = (tables["purchases"].group_by("customer_index", "article_index")
              .agg(pl.len().alias("times"), pl.col("t_dat").max().cast(pl.Date).alias("last")))
    facts = {(r["customer_index"], r["article_index"]): (r["times"], r["last"]) for r in bought.iter_rows(named=True)}
    checked = {1: 0, 2: 0}
    for c, row, row_reasons in zip(customers.tolist(), ids, reasons):
        for a, reason in zip(row.tolist(), row_reasons):
            if (c, a) not in facts:
                assert reason.kind != "bought"
                continue
            times, last = facts[(c, a)]
            expected = f"bought once, on {last}" if times == 1 else f"bought {times} times, last on {last}"
            assert reason.why(label) == expected
            checked[min(times, 2)] += 1
    assert checked[1] and checked[2]  # once and several times, both seen


def test_a_variant_names_the_colour_the_customer_bought(fitted, tables):
    customers = warm_customers(fitted)
    ids, _, reasons = fitted.recommend_explained(customers, k=12)
    product = tables["articles"]["product_code"].to_numpy()
    purchases = tables["purchases"]
    found = 0
    for c, row, row_reasons in zip(customers.tolist(), ids, reasons):
        mine = purchases.filter(pl.col("customer_index") == c)
        for a, reason in zip(row.tolist(), row_reasons):
            if reason.kind != "variant":
                continue
            found += 1
            assert reason.why(label) == f"another colour of a{reason.article} that you bought"
            assert a not in mine["article_index"].to_list() and reason.article in mine["article_index"].to_list()
            assert product[reason.article] == product[a]
            # the most bought of the product's articles the customer bought
            same = mine.filter(pl.col("article_index").is_in(np.flatnonzero(product == product[a]).tolist()))
            assert same.filter(pl.col("article_index") == reason.article).height == \
                same.group_by("article_index").len()["len"].max()
    assert found


def test_a_gnn_candidate_names_the_closest_recent_purchase(fitted, tables):
    customers = warm_customers(fitted, n=fitted.n_customers)
    ids, _, reasons = fitted.recommend_explained(customers, k=12)
    unit = torch.nn.functional.normalize(fitted.article_emb.float(), dim=1)
    last = (tables["purchases"].group_by("customer_index", "article_index").agg(pl.col("t_dat").max())
            .sort("customer_index", "t_dat", "article_index", descending=[False, True, False]))
    found = 0
    for c, row, row_reasons in zip(customers.tolist(), ids, reasons):
        recent = last.filter(pl.col("customer_index") == c)["article_index"].to_numpy()[:5]
        for a, reason in zip(row.tolist(), row_reasons):
            if reason.kind == "gnn":
                found += len(recent) > 1  # a choice among several
                cosine = (unit[recent] @ unit[a]).numpy()
                assert reason.article in recent and cosine[list(recent).index(reason.article)] == \
                    pytest.approx(cosine.max(), abs=1e-6)
                assert reason.why(label) == f"close in the graph model to a{reason.article}, which you bought recently"
    assert found


def test_articles_beyond_the_candidates_say_so(fitted):
    customer = int(warm_customers(fitted)[0])
    sizes = dict(fitted.sizes)
    try:
        fitted.sizes = {"bought": 1}  # one candidate: the other eleven slots are filled beyond it
        ids, scores, reasons = fitted.recommend_explained(customer, k=12)
        assert np.array_equal(ids, fitted.recommend(customer, k=12)[0])
    finally:
        fitted.sizes = sizes
    assert reasons[0].sources == ("bought",) and reasons[0].why(label).startswith("bought ") and scores[0] > 0.5
    assert {r.sources for r in reasons[1:]} == {()} and (scores[1:] < 0.5).all()
    by = {0.0: "the graph model's score", 1.0: "its recent sales"}.get(fitted.rest_mix,
                                                                      "its recent sales and the graph model's score")
    assert set(whys(reasons[1:])) == {f"ranked by the model beyond its candidates, by {by}"}


# ---- every interface carries the same why; submission.csv none ---------------------------------------------------
@pytest.fixture(scope="module")
def cli_answers(workdir, tables) -> dict[str, dict]:
    runner = CliRunner()
    ids = tables["customers"]["customer_id"].to_list()
    buyers = set(tables["purchases"]["customer_index"].to_list())
    index = tables["customers"]["customer_index"].to_list()
    asked = [c for c, i in zip(ids, index) if i in buyers][:3] + [c for c, i in zip(ids, index) if i not in buyers][:1]
    out = {}
    for cid in asked + ["ab" * 32]:
        res = runner.invoke(app, ["recommend", "-w", str(workdir), "--customer-id", cid, "--json"])
        assert res.exit_code == 0, res.output
        out[cid] = json.loads(res.stdout)
    return out


def test_cli_json_has_why_and_sources(cli_answers, workdir):
    for answer in cli_answers.values():
        for r in answer["recommendations"]:
            assert list(r)[-2:] == ["why", "sources"] and r["why"] and set(r["sources"]) <= set(SOURCES)
    warm = next(a for a in cli_answers.values() if a["fallback"] is None)
    assert any(re.fullmatch(r"bought (once, on|\d+ times, last on) \d{4}-\d\d-\d\d", r["why"])
               for r in warm["recommendations"])
    table = CliRunner().invoke(app, ["recommend", "-w", str(workdir), "--customer-id", next(iter(cli_answers))],
                               env={"COLUMNS": "250"})
    assert table.exit_code == 0 and "why" in table.output
    assert warm["recommendations"][0]["why"][:20] in table.output or any(
        r["why"][:20] in table.output for r in next(iter(cli_answers.values()))["recommendations"])


@pytest.mark.filterwarnings("ignore:Using `httpx` with")  # starlette's TestClient asks for httpx2
def test_http_and_python_api_carry_the_cli_why(cli_answers, workdir):
    from fastapi.testclient import TestClient

    from hmgnn import serve

    holder = serve.ModelHolder(load_config(None, [], workdir=workdir))
    with TestClient(serve.create_app(holder)) as http:
        for cid, answer in cli_answers.items():
            got = http.get(f"/recommendations/{cid}").json()
            assert got["recommendations"] == [{**r} for r in answer["recommendations"]], cid
        batch = http.post("/recommendations", json={"customer_ids": list(cli_answers)}).json()["results"]
    python = hmgnn.load(workdir).recommend(list(cli_answers))
    for (cid, answer), body in zip(cli_answers.items(), batch):
        expected = [(r["article_id"], r["why"], r["sources"]) for r in answer["recommendations"]]
        assert [(r["article_id"], r["why"], r["sources"]) for r in body["recommendations"]] == expected
        mine = python.filter(pl.col("customer_id") == cid)
        assert list(zip(mine["article_id"], mine["why"], mine["sources"].to_list())) == expected


def test_submission_csv_holds_ids_only(workdir, tables, cli_answers):
    out = recommend.run(load_config(None, [], workdir=workdir), all_customers=True, out=workdir / "why-sub.csv")
    lines = Path(out).read_text().splitlines()
    assert lines[0] == "customer_id,prediction" and len(lines) == tables["customers"].height + 1
    assert all(re.fullmatch(r"[0-9a-f]{64},\d{10}( \d{10}){11}", line) for line in lines[1:])
    rows = dict(line.split(",") for line in lines[1:])
    for cid, answer in cli_answers.items():
        if cid in rows:
            assert rows[cid].split() == [r["article_id"] for r in answer["recommendations"]]

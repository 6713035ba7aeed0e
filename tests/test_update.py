"""`hmgnn update` (hmgnn/update.py): a later week added to a trained model without training again. New customers get
personal recommendations from their first purchases, existing customers' new purchases count, the model folder
copied elsewhere updates on its own, and bad input changes nothing."""

from __future__ import annotations

import datetime as dt
import shutil
from pathlib import Path

import numpy as np
import polars as pl
import pytest
import torch

import hmgnn
from hmgnn import artifacts as A
from hmgnn import portable, recommend, update
from hmgnn.ranking.checkpoint import load as load_checkpoint
from hmgnn.cli import main
from hmgnn.config import load_config
from hmgnn.graph import load_graph
from hmgnn.models.reasons import BOUGHT

NEW_CUSTOMER = "ab" * 32
NEW_ARTICLE = 999_999_001  # a new product whose colour the graph never saw
NEW_VARIANT = 999_998_001  # a new colour of a product whose description the graph saw


def hmgnn_cli(capsys, *args: object) -> tuple[int, str]:
    """The real CLI in-process: (exit code, stderr)."""
    capsys.readouterr()
    try:
        main([str(a) for a in args])
        code = 0
    except SystemExit as done:
        code = done.code or 0
    return code, capsys.readouterr().err


def new_week(tables: Path, out: Path, days: tuple[int, int] = (1, 3), customer: str = NEW_CUSTOMER) -> dict:
    """Kaggle-schema files of purchases after the last day of `tables` (a tables/ or model folder): a new customer
    buys two known articles; the customer of the last purchase buys a new article and a known one."""
    out.mkdir(parents=True, exist_ok=True)
    tx = pl.read_parquet(tables / A.TRANSACTIONS_PARQUET)
    customers = pl.read_parquet(tables / A.CUSTOMERS_PARQUET)
    articles = pl.read_parquet(tables / A.ARTICLES_PARQUET).sort("article_index")
    last = tx["t_dat"].max()
    old_customer = customers["customer_id"][int(tx["customer_index"][-1])]
    known = [f"{a:010d}" for a in articles["article_id"][:2]]
    described = articles.filter(pl.col("detail_desc").str.len_chars() > 20).row(0, named=True)
    pl.DataFrame({"customer_id": [customer], "FN": [1.0], "Active": [None], "club_member_status": ["ACTIVE"],
                  "fashion_news_frequency": ["Monthly"], "age": [27], "postal_code": ["f" * 64]}
                 ).write_csv(out / A.CUSTOMERS_CSV)
    pl.DataFrame({"article_id": [f"{NEW_ARTICLE:010d}", f"{NEW_VARIANT:010d}"], "product_code": [999999, 999998],
                  "prod_name": ["New dress", "New colour"], "product_type_name": ["Dress", "Dress"],
                  "colour_group_name": ["Neon never seen", "Black"],
                  "detail_desc": ["words nobody wrote before", described["detail_desc"]]}
                 ).write_csv(out / A.ARTICLES_CSV)
    first, second = (last + dt.timedelta(days=d) for d in days)
    pl.DataFrame({"t_dat": [str(first), str(first), str(second), str(second)],
                  "customer_id": [customer, customer, old_customer, old_customer],
                  "article_id": [known[0], known[1], f"{NEW_ARTICLE:010d}", known[0]],
                  "price": [0.03, 0.02, 0.05, 0.03], "sales_channel_id": [2, 2, 1, 1]}
                 ).write_csv(out / A.TRANSACTIONS_CSV)
    return {"last": last, "first": first, "second": second, "old_customer": old_customer, "known": known,
            "described": described["article_index"]}


def snapshot(*folders: Path) -> dict[str, tuple[str, int]]:
    """Every file under `folders`: its fingerprint and modification time."""
    return {str(p): (A.fingerprint(p), p.stat().st_mtime_ns) for f in folders for p in sorted(f.rglob("*"))
            if p.is_file()}


@pytest.fixture(scope="module")
def updated(trained_workdir, tmp_path_factory) -> tuple[Path, dict]:
    """A copy of the trained workdir with a new week added by `hmgnn update`."""
    wd = tmp_path_factory.mktemp("updated") / "wd"
    shutil.copytree(trained_workdir, wd)
    week = new_week(wd / A.TABLES, wd.parent / "new")
    update.run(load_config(None, [], workdir=wd), wd.parent / "new")
    return wd, week


def test_a_new_customer_gets_personal_recommendations(updated):
    wd, week = updated
    result = recommend.recommend_customer(load_config(None, [], workdir=wd), NEW_CUSTOMER)
    assert result.fallback is None  # personal: not the cold-start fallback
    assert all(r["sources"] for r in result.recommendations)
    # the reasons name what the customer bought in the new week (walk, variant or graph neighbours of it)
    assert any(a in r["why"] for r in result.recommendations for a in week["known"])


def test_an_existing_customers_new_purchases_count(updated):
    wd, week = updated
    model, _ = recommend.fit_model(load_config(None, [], workdir=wd), "gnn")
    assert model.as_of == week["second"]
    customers = pl.read_parquet(wd / A.TABLES / A.CUSTOMERS_PARQUET)
    index = int(customers.filter(pl.col("customer_id") == week["old_customer"])["customer_index"][0])
    articles = pl.read_parquet(wd / A.TABLES / A.ARTICLES_PARQUET)
    new_article = int(articles.filter(pl.col("article_id") == NEW_ARTICLE)["article_index"][0])
    known = int(articles.filter(pl.col("article_id") == int(week["known"][0]))["article_index"][0])
    reasons = model.explain(index, np.array([[new_article, known]]))[0]
    assert [(r.kind, r.last) for r in reasons] == [(BOUGHT, week["second"])] * 2


def test_new_nodes_are_placed_by_their_features(updated):
    wd, week = updated
    checkpoint = load_checkpoint(wd / A.MODEL / A.MODEL_PT)
    customers = pl.read_parquet(wd / A.TABLES / A.CUSTOMERS_PARQUET)
    articles = pl.read_parquet(wd / A.TABLES / A.ARTICLES_PARQUET)
    assert customers["customer_id"][-1] == NEW_CUSTOMER  # appended: no index moved
    assert articles["article_id"][-2:].to_list() == [NEW_ARTICLE, NEW_VARIANT]
    args = checkpoint.model_args
    assert (args["num_customers"], args["num_articles"]) == (customers.height, articles.height)
    ids = checkpoint.state_dict["embedding.customer.weight"]
    assert ids.shape[0] == customers.height and not ids[-1].any() and ids[:-1].abs().sum(1).min() > 0
    assert not checkpoint.state_dict["embedding.article.weight"][-2:].any()
    customer_x, article_x = portable.read_features(wd / A.MODEL, checkpoint.files, checkpoint.model_args)
    names = checkpoint.feature_names
    new_customer = dict(zip(names["customer"], customer_x[-1].tolist()))
    assert new_customer["FN"] == 1 and new_customer["club_member_status=ACTIVE"] == 1
    assert new_customer["fashion_news_frequency=Monthly"] == 1 and new_customer["age_missing"] == 0
    new_article = dict(zip(names["article"], article_x[-2].tolist()))
    assert new_article["product_type_name=Dress"] == 1
    colour = [v for n, v in new_article.items() if n.startswith("colour_group_name=")]
    assert colour and not any(colour)  # a colour the graph never saw: encoded as a missing one
    text = [i for i, n in enumerate(names["article"]) if n.startswith("desc_svd_")]
    assert not article_x[-2, text].any()  # a description the graph never saw: zeros, as an empty one
    assert torch.equal(article_x[-1, text], article_x[week["described"], text])  # a known one: its embedding
    assert article_x[week["described"], text].any()
    data = load_graph(wd / A.GRAPH / A.GRAPH_PT)  # graph/ fits the tables: a node per row, an edge per purchase
    assert torch.equal(data["article"].x, article_x) and torch.equal(data["customer"].x, customer_x)
    purchases = pl.read_parquet(wd / A.TABLES / A.TRANSACTIONS_PARQUET)
    edges = data["customer", "buys", "article"].edge_index
    assert edges[:, -4:].tolist() == [purchases["customer_index"][-4:].to_list(),
                                      purchases["article_index"][-4:].to_list()]
    assert edges.shape[1] == purchases.height


def test_lineage_holds_and_every_interface_answers_as_of_the_new_day(updated, capsys):
    wd, week = updated
    A.check_lineage([wd / A.TABLES, wd / A.GRAPH, wd / A.MODEL])
    before = (wd / A.MODEL / A.MODEL_PT).stat().st_mtime_ns
    code, err = hmgnn_cli(capsys, "recommend", "-w", wd, "--customer-id", NEW_CUSTOMER, "--json")
    assert code == 0 and "error" not in err and "warning" not in err
    assert (wd / A.MODEL / A.MODEL_PT).stat().st_mtime_ns == before  # nothing trained again
    rec = hmgnn.load(wd)
    assert f"as_of={week['second']}" in repr(rec)
    answer = rec.recommend([NEW_CUSTOMER], k=5)
    assert answer["fallback"].is_null().all() and answer.height == 5
    card = (wd / A.MODEL / "README.md").read_text()
    assert f"4 purchases from {week['first']} to {week['second']} added (1 new customer, 2 new articles)" in card
    assert "the ranker was kept" in card
    assert A.read_manifest(wd / A.GRAPH)["updates"][-1]["through"] == str(week["second"])


def test_a_copied_model_folder_updates_on_its_own(trained_workdir, tmp_path, capsys):
    folder = tmp_path / "elsewhere" / "hm"
    shutil.copytree(trained_workdir / A.MODEL, folder)
    week = new_week(folder, tmp_path / "new")
    workdir_before = snapshot(trained_workdir / A.TABLES, trained_workdir / A.MODEL)
    code, err = hmgnn_cli(capsys, "update", "--model-dir", folder, "--raw", tmp_path / "new")
    assert code == 0, err
    assert snapshot(trained_workdir / A.TABLES, trained_workdir / A.MODEL) == workdir_before
    result = recommend.recommend_customer(load_config(None, [], workdir=folder), NEW_CUSTOMER)
    assert result.fallback is None
    assert any(a in r["why"] for r in result.recommendations for a in week["known"])
    portable.check_folder(folder)
    assert pl.read_parquet(folder / A.TRANSACTIONS_PARQUET)["t_dat"].max() == week["second"]
    # the workdir's own model folder is updated through the workdir, never alone
    code, err = hmgnn_cli(capsys, "update", "--model-dir", trained_workdir / A.MODEL, "--raw", tmp_path / "new")
    assert code == 2 and "update the workdir" in err


def test_a_second_update_places_new_customers_alike_and_serve_reloads(trained_workdir, tmp_path, capsys):
    from hmgnn import loaded

    folder = tmp_path / "hm"
    shutil.copytree(trained_workdir / A.MODEL, folder)
    new_week(folder, tmp_path / "first")
    assert hmgnn_cli(capsys, "update", "--model-dir", folder, "--raw", tmp_path / "first")[0] == 0
    cfg = load_config(None, [], workdir=folder)
    serving = loaded.load(cfg)
    second = "cd" * 32  # the same profile as the first week's new customer
    week = new_week(folder, tmp_path / "second", customer=second)
    assert serving.customer_index(second) is None and serving.health()["as_of"] == week["last"]
    code, err = hmgnn_cli(capsys, "update", "--model-dir", folder, "--raw", tmp_path / "second")
    assert code == 0, err
    checkpoint = load_checkpoint(folder / A.MODEL_PT)
    assert [u["new_customers"] for u in checkpoint.updates] == [1, 1]
    customer_x, _ = portable.read_features(folder, checkpoint.files, checkpoint.model_args)
    # the age scaling is the trained graph's, not one refit on the customers added since
    assert torch.equal(customer_x[-1], customer_x[-2])
    reloaded = loaded.load(cfg)  # what `hmgnn serve`'s reload does
    assert reloaded.health()["as_of"] == week["second"]
    index = reloaded.customer_index(second)
    assert index == checkpoint.model_args["num_customers"] - 1 and not reloaded.model.is_cold([index])[0]
    assert (folder / "README.md").read_text().count("\n- ") >= 2


@pytest.fixture
def workdir_copy(trained_workdir, tmp_path) -> Path:
    wd = tmp_path / "wd"
    shutil.copytree(trained_workdir, wd)
    return wd


def test_bad_input_changes_nothing(workdir_copy, tmp_path, capsys):
    wd = workdir_copy
    before = snapshot(wd)
    week = new_week(wd / A.TABLES, tmp_path / "early", days=(0, 2))  # the first rows on the last day
    code, err = hmgnn_cli(capsys, "update", "-w", wd, "--raw", tmp_path / "early")
    errors = [line for line in err.splitlines() if line.startswith("error:")]
    assert code == 1 and len(errors) == 1 and "Traceback" not in err
    assert "row 1" in errors[0] and str(week["last"]) in errors[0] and "on or before" in errors[0]
    assert snapshot(wd) == before

    new_week(wd / A.TABLES, tmp_path / "unknown")
    (tmp_path / "unknown" / A.ARTICLES_CSV).unlink()  # the new article's row is missing
    code, err = hmgnn_cli(capsys, "update", "-w", wd, "--raw", tmp_path / "unknown")
    assert code == 1 and f"{NEW_ARTICLE:010d}" in err.strip().splitlines()[-1]
    assert snapshot(wd) == before

    code, err = hmgnn_cli(capsys, "update", "-w", wd, "--raw", tmp_path / "nosuch")
    assert code == 2 and "nosuch" in err
    code, _ = hmgnn_cli(capsys, "update", "-w", wd)  # no --raw at all
    assert code == 2
    assert snapshot(wd) == before
    assert not [p for p in wd.rglob(".*") if p.is_file()]  # no temporary file left


def test_a_failure_while_writing_leaves_everything_as_it_was(workdir_copy, tmp_path, monkeypatch):
    wd = workdir_copy
    before = snapshot(wd)
    new_week(wd / A.TABLES, tmp_path / "new")

    def broken(*args, **kwargs):
        raise OSError("disk gone")

    monkeypatch.setattr(update, "model_card_with", broken)  # after the tables and graph.pt are staged
    with pytest.raises(OSError):
        update.run(load_config(None, [], workdir=wd), tmp_path / "new")
    assert snapshot(wd) == before
    assert not [p for p in wd.rglob(".*") if p.is_file()]


def test_refit_ranker_changes_the_ranker_only(workdir_copy, tmp_path, capsys):
    wd = workdir_copy
    old = load_checkpoint(wd / A.MODEL / A.MODEL_PT)
    new_week(wd / A.TABLES, tmp_path / "new")
    code, err = hmgnn_cli(capsys, "update", "-w", wd, "--raw", tmp_path / "new", "--refit-ranker")
    assert code == 0, err
    new = load_checkpoint(wd / A.MODEL / A.MODEL_PT)
    assert new.ranker["model_text"] != old.ranker["model_text"]
    for name, weights in old.state_dict.items():  # the GNN's weights kept (ID embeddings padded with zeros)
        assert torch.equal(new.state_dict[name][:len(weights)], weights)
    assert new.updates[-1]["ranker_refit"] is True
    card = (wd / A.MODEL / "README.md").read_text()
    assert "the ranker was fit again on the newest label window" in card
    A.check_lineage([wd / A.TABLES, wd / A.GRAPH, wd / A.MODEL])
    assert recommend.recommend_customer(load_config(None, [], workdir=wd), NEW_CUSTOMER).fallback is None


def test_a_rename_that_fails_midway_is_undone(tmp_path, monkeypatch):
    finals = [tmp_path / name for name in ("a", "b", "c")]
    for path in finals[:2]:
        path.write_text(f"old {path.name}")  # c is new
    staged = update.Staged()
    for path in finals:
        staged.path(path).write_text(f"new {path.name}")
    real, calls = update.os.replace, []

    def replace(src, dst):
        calls.append(dst)
        if len(calls) == 3:
            raise OSError("disk gone")
        real(src, dst)

    monkeypatch.setattr(update.os, "replace", replace)
    with pytest.raises(OSError):
        staged.commit()
    assert [p.read_text() for p in finals[:2]] == ["old a", "old b"] and not finals[2].exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a", "b"]  # no staged file or backup left

"""`hmgnn build-graph`: shapes, dtypes, feature names, edges equal to purchase rows, and its errors."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path

import numpy as np
import polars as pl
import pytest
import torch
from tables_fixture import make_tables

from hmgnn import graph
from hmgnn.artifacts import FEATURE_NAMES, GRAPH_PT, MANIFEST
from hmgnn.config import Config, GraphConfig
from hmgnn.errors import InputError, MissingArtifactError


@pytest.fixture(scope="module")
def tables(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_tables(tmp_path_factory.mktemp("w") / "tables", n_customers=120, n_articles=80, n_rows=2000, seed=1)


@pytest.fixture(scope="module")
def built(tables: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    cfg = Config(workdir=str(tables.parent), graph=GraphConfig(text_dim=6))
    return graph.run(cfg, out=tmp_path_factory.mktemp("g") / "graph")


def _load(folder: Path) -> tuple:
    return graph.load_graph(folder / GRAPH_PT), json.loads((folder / FEATURE_NAMES).read_text())


def test_nodes_features_and_names(built: Path, tables: Path) -> None:
    data, names = _load(built)
    customers = pl.read_parquet(tables / "customers.parquet")
    articles = pl.read_parquet(tables / "articles.parquet")
    assert set(data.node_types) == {"customer", "article"}
    assert data["customer"].x.shape == (customers.height, len(names["customer"])) == (customers.height, 10)
    assert data["article"].x.shape == (articles.height, len(names["article"]))
    assert data["customer"].x.dtype == data["article"].x.dtype == torch.float32
    assert names["customer"][:3] == ["FN", "Active", "club_member_status=ACTIVE"]
    assert names["customer"][-2:] == ["age", "age_missing"]
    assert names["article"][-6:] == [f"desc_svd_{i}" for i in range(6)]
    assert "product_type_name=Trousers" in names["article"]
    assert len(set(names["article"])) == len(names["article"])
    # every metadata column contributes a block named after it
    assert {n.split("=")[0] for n in names["article"] if "=" in n} == set(graph.ARTICLE_CATEGORIES)


def test_customer_features_trace_back_to_columns(built: Path, tables: Path) -> None:
    data, names = _load(built)
    x = data["customer"].x.numpy()
    col = {n: i for i, n in enumerate(names["customer"])}
    customers = pl.read_parquet(tables / "customers.parquet")
    known = customers["known"].to_numpy()
    np.testing.assert_array_equal(x[known, col["FN"]], customers["FN"].to_numpy()[known])
    for status in graph.CLUB_MEMBER_STATUSES:
        expected = (customers["club_member_status"] == status).fill_null(False).to_numpy()
        np.testing.assert_array_equal(x[:, col[f"club_member_status={status}"]], expected)
    missing = customers["age"].is_null().to_numpy()
    assert missing.any() and (~missing).any()
    np.testing.assert_array_equal(x[:, col["age_missing"]], missing)
    assert np.all(x[missing, col["age"]] == 0)  # imputed with the median, which scales to 0
    ages = customers["age"].to_numpy()[~missing].astype(float)
    np.testing.assert_allclose(x[~missing, col["age"]], (ages - np.median(ages)) / ages.std(), rtol=1e-5)
    # unknown customers: every field empty
    assert not known.all()
    np.testing.assert_array_equal(x[~known], np.eye(x.shape[1])[[-1] * int((~known).sum())])


def test_article_features(built: Path, tables: Path) -> None:
    data, names = _load(built)
    x = data["article"].x.numpy()
    articles = pl.read_parquet(tables / "articles.parquet")
    known = articles["known"].to_numpy()
    assert np.all(x[~known] == 0)
    for column in graph.ARTICLE_CATEGORIES:
        block = [i for i, n in enumerate(names["article"]) if n.startswith(column + "=")]
        np.testing.assert_array_equal(x[known][:, block].sum(1), 1)  # exactly one value per known article
    i = names["article"].index("product_type_name=Trousers")
    np.testing.assert_array_equal(x[:, i], (articles["product_type_name"] == "Trousers").fill_null(False).to_numpy())
    text = x[:, -6:]
    has_text = articles["detail_desc"].str.strip_chars().str.len_chars().fill_null(0).to_numpy() > 0
    assert (~has_text & known).any()
    assert np.all(text[~has_text] == 0)
    np.testing.assert_allclose(np.linalg.norm(text[has_text & known], axis=1), 1, rtol=1e-4)
    # colour variants of one product share a description, hence an embedding
    same = articles.filter(pl.col("known")).group_by("detail_desc").agg(pl.col("article_index")).filter(
        pl.col("article_index").list.len() > 1)["article_index"][0].to_list()
    np.testing.assert_array_equal(text[same[0]], text[same[1]])


def test_edges_are_purchase_rows(built: Path, tables: Path) -> None:
    data, _ = _load(built)
    tx = pl.read_parquet(tables / "transactions.parquet")
    buys, rev = data["customer", "buys", "article"], data["article", "rev_buys", "customer"]
    assert buys.edge_index.shape == (2, tx.height) and buys.edge_index.dtype == torch.int64
    np.testing.assert_array_equal(buys.edge_index[0].numpy(), tx["customer_index"].to_numpy())
    np.testing.assert_array_equal(buys.edge_index[1].numpy(), tx["article_index"].to_numpy())
    assert torch.equal(rev.edge_index, buys.edge_index.flip(0))
    days = np.array([(d - dt.date(2018, 9, 20)).days for d in tx["t_dat"].to_list()])
    assert buys.time.dtype == torch.int32 and buys.price.dtype == torch.float32
    assert buys.sales_channel.dtype == torch.int8
    np.testing.assert_array_equal(buys.time.numpy(), days)
    np.testing.assert_array_equal(buys.price.numpy(), tx["price"].to_numpy())
    np.testing.assert_array_equal(buys.sales_channel.numpy(), tx["sales_channel_id"].to_numpy())
    for name in ("time", "price", "sales_channel"):
        assert torch.equal(rev[name], buys[name])
    data.validate()


def test_deterministic_and_skips_when_current(built: Path, tables: Path, tmp_path: Path) -> None:
    cfg = Config(workdir=str(tables.parent), graph=GraphConfig(text_dim=6))
    again = graph.run(cfg, out=tmp_path / "graph")
    for name in (GRAPH_PT, FEATURE_NAMES):
        assert (again / name).read_bytes() == (built / name).read_bytes(), name
    stamp = json.loads((again / MANIFEST).read_text())["created_at"]
    (again / MANIFEST).touch()
    assert graph.run(cfg, out=again) == again
    assert json.loads((again / MANIFEST).read_text())["created_at"] == stamp


@pytest.mark.parametrize("descriptions", [
    [None, None, None],          # no text at all
    ["", "  ", None],            # only empty text
    ["the and", "a", None],      # only stop words: empty vocabulary
    ["denim", "denim", "denim"],  # one word
    ["red dress", "blue dress", None],  # fewer words and descriptions than dimensions
])
def test_description_embedding_edge_cases(descriptions: list[str | None]) -> None:
    text, stats = graph.description_embedding(pl.Series(descriptions, dtype=pl.String), 8, 100, 0)
    assert text.shape == (3, 8) and text.dtype == np.float32 and np.isfinite(text).all()
    norms = np.linalg.norm(text, axis=1)
    assert np.all((np.abs(norms - 1) < 1e-5) | (norms == 0))
    assert stats["text_components"] <= 8


def test_text_dim_zero_leaves_text_out(tables: Path, tmp_path: Path) -> None:
    out = graph.run(Config(workdir=str(tmp_path), graph=GraphConfig(text_dim=0)), inp=tables, out=tmp_path / "g")
    data, names = _load(out)
    assert not any(n.startswith("desc_svd") for n in names["article"])
    assert data["article"].x.shape[1] == len(names["article"])


def test_missing_tables_name_the_command(tmp_path: Path) -> None:
    with pytest.raises(MissingArtifactError, match="hmgnn ingest"):
        graph.run(Config(workdir=str(tmp_path)))


def test_bad_tables_list_every_problem(tables: Path, tmp_path: Path) -> None:
    bad = tmp_path / "tables"
    bad.mkdir()
    (bad / "articles.parquet").write_bytes((tables / "articles.parquet").read_bytes())
    pl.read_parquet(tables / "customers.parquet").drop("age").write_parquet(bad / "customers.parquet")
    tx = pl.read_parquet(tables / "transactions.parquet")
    tx.with_columns(price=pl.col("price").cast(pl.String)).write_parquet(bad / "transactions.parquet")
    with pytest.raises(InputError, match="column 'price' is String, expected Float32; customers.parquet: column "
                                         "'age' is missing .*hmgnn ingest"):
        graph.run(Config(workdir=str(tmp_path)), inp=bad)
    (bad / "customers.parquet").write_bytes((tables / "customers.parquet").read_bytes())
    tx.with_columns(article_index=pl.col("article_index") + 1000).write_parquet(bad / "transactions.parquet")
    with pytest.raises(InputError, match=r"transactions.parquet: .* article_index outside 0\.\.81.*hmgnn ingest"):
        graph.run(Config(workdir=str(tmp_path)), inp=bad)

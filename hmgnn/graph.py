"""`hmgnn build-graph`: the tables as one PyG HeteroData, customers -buys-> articles, with node features.

One edge per purchase row (time, price, sales channel on it); feature_names.json traces each feature to a column.
"""

from __future__ import annotations

import datetime as dt
import json
import time
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl
import torch
from torch_geometric.data import HeteroData
from torch_geometric.data.storage import BaseStorage, EdgeStorage, NodeStorage

from hmgnn.artifacts import (ARTICLES_PARQUET, CUSTOMERS_PARQUET, FEATURE_NAMES, GRAPH, GRAPH_PT, TABLES,
                             TRANSACTIONS_PARQUET, StepOutput, atomic_write_text, check_lineage, load_torch, require,
                             save_torch, skip_if_current, step_dir)
from hmgnn.config import Config
from hmgnn.console import info, progress
from hmgnn.errors import InputError

STEP = "build-graph"
BUYS = ("customer", "buys", "article")
REV_BUYS = ("article", "rev_buys", "customer")
TIME_ORIGIN = dt.date(2018, 9, 20)
"""Edge `time` counts days since this date, the first day of the Kaggle transactions."""
_ORIGIN_DAY = (TIME_ORIGIN - dt.date(1970, 1, 1)).days

# Kaggle's values first, so the customer features keep the same columns on every data set.
CLUB_MEMBER_STATUSES = ["ACTIVE", "PRE-CREATE", "LEFT CLUB"]
FASHION_NEWS_FREQUENCIES = ["NONE", "Regularly", "Monthly"]
ARTICLE_CATEGORIES = [
    "product_type_name", "product_group_name", "graphical_appearance_name", "colour_group_name",
    "perceived_colour_value_name", "perceived_colour_master_name", "department_name", "index_name",
    "index_group_name", "section_name", "garment_group_name",
]
"""Article metadata one-hot encoded, by name (the codes carry the same information, less readably)."""

HETERO_DATA_CLASSES = (HeteroData, BaseStorage, NodeStorage, EdgeStorage)
"""The classes a graph.pt holds besides tensors: what its loader allows, and nothing more."""

TRANSACTION_SCHEMA = {"customer_index": pl.Int32, "article_index": pl.Int32, "t_dat": pl.Date,
                       "price": pl.Float32, "sales_channel_id": pl.Int8}
"""The purchase columns and types the graph's edges are made of (and `hmgnn sample` splits)."""
_CUSTOMER_SCHEMA = {"customer_index": pl.Int32, "FN": pl.Int8, "Active": pl.Int8, "club_member_status": pl.String,
                     "fashion_news_frequency": pl.String, "age": pl.Int16, "known": pl.Boolean}
_ARTICLE_SCHEMA = {"article_index": pl.Int32, **{c: pl.String for c in ARTICLE_CATEGORIES},
                    "detail_desc": pl.String, "known": pl.Boolean}


def run(cfg: Config, inp: Path | None = None, out: Path | None = None, force: bool = False) -> Path:
    """Build `<workdir>/graph` (graph.pt + feature_names.json) from `<workdir>/tables` and return its path."""
    started = time.perf_counter()
    tables = Path(inp) if inp is not None else step_dir(cfg.workdir, TABLES)
    out = Path(out) if out is not None else step_dir(cfg.workdir, GRAPH)
    require(tables, [TRANSACTIONS_PARQUET, CUSTOMERS_PARQUET, ARTICLES_PARQUET], TABLES)
    check_lineage([tables])
    step_config = cfg.section("graph")
    if skip_if_current(out, STEP, step_config, [tables], force):
        return out

    with progress(transient=True, unit="parts") as bar:
        task = bar.add_task("reading tables", total=4)
        transactions, customers, articles = read_tables(tables)
        bar.update(task, advance=1, description=f"{transactions.height:,} purchase edges")
        edges = purchase_edges(transactions)
        del transactions
        bar.update(task, advance=1, description=f"{customers.height:,} customers' features")
        customer_x, customer_names, customer_stats = customer_features(customers)
        bar.update(task, advance=1, description=f"{articles.height:,} articles' features (text: TF-IDF + SVD)")
        article_x, article_names, article_stats = article_features(
            articles, cfg.graph.text_dim, cfg.graph.text_max_features, cfg.seed)
        bar.update(task, advance=1)

    data = HeteroData()
    data["customer"].x = torch.from_numpy(customer_x)
    data["article"].x = torch.from_numpy(article_x)
    data[BUYS].edge_index = edges["edge_index"]
    data[REV_BUYS].edge_index = edges["edge_index"].flip(0)
    for name in ("time", "price", "sales_channel"):
        # the reverse edges share the same tensors: torch.save stores them once
        data[BUYS][name] = data[REV_BUYS][name] = edges[name]

    with StepOutput(out, STEP, cfg.to_dict(), step_config, inputs=[tables], started=started) as so:
        save_torch(data, so.dir / GRAPH_PT)
        names = {"customer": customer_names, "article": article_names}
        atomic_write_text(so.dir / FEATURE_NAMES, json.dumps(names, indent=1, ensure_ascii=False) + "\n")
        so.rows.update(customers=customer_x.shape[0], articles=article_x.shape[0],
                       edges=int(edges["edge_index"].shape[1]))
        so.extra["features"] = {"customer": len(customer_names), "article": len(article_names),
                                **customer_stats, **article_stats}
    info(f"build-graph: {customer_x.shape[0]:,} customers x {customer_x.shape[1]} features, {article_x.shape[0]:,} "
         f"articles x {article_x.shape[1]} features, {int(edges['edge_index'].shape[1]):,} purchase edges")
    return out


def load_graph(path: Path) -> HeteroData:
    """Load a graph.pt written by `run`: tensors, plain data and PyG's HeteroData and storage classes only."""
    return load_torch(path, GRAPH, allow=HETERO_DATA_CLASSES)


def load_graph_features(graph_dir: Path) -> tuple[torch.Tensor, torch.Tensor, dict[str, list[str]]]:
    """The static node features of graph.pt (customers, articles) and their column names."""
    data = load_graph(graph_dir / GRAPH_PT)
    names = json.loads((graph_dir / FEATURE_NAMES).read_text())
    return data["customer"].x.float(), data["article"].x.float(), names


def read_tables(tables: Path) -> tuple[pl.DataFrame, pl.DataFrame, pl.DataFrame]:
    """Read the columns the graph needs, checking names, types and indices; one InputError lists every problem."""
    problems: list[str] = []
    frames = []
    for file, columns in ((TRANSACTIONS_PARQUET, TRANSACTION_SCHEMA), (CUSTOMERS_PARQUET, _CUSTOMER_SCHEMA),
                          (ARTICLES_PARQUET, _ARTICLE_SCHEMA)):
        schema = pl.read_parquet_schema(tables / file)
        bad = [f"{file}: column '{c}' is missing" for c in columns if c not in schema]
        bad += [f"{file}: column '{c}' is {schema[c]}, expected {t}" for c, t in columns.items()
                if c in schema and not _compatible(schema[c], t)]
        problems += bad
        frames.append(None if bad else pl.read_parquet(tables / file, columns=list(columns)).cast(columns))
    if not problems:
        transactions, customers, articles = frames
        for file, df, index in ((CUSTOMERS_PARQUET, customers, "customer_index"),
                                (ARTICLES_PARQUET, articles, "article_index")):
            if not df[index].equals(pl.Series(index, np.arange(df.height, dtype=np.int32)), check_names=False):
                problems.append(f"{file}: {index} is not 0..{df.height - 1} in row order")
        for column, n in (("customer_index", customers.height), ("article_index", articles.height)):
            outside = transactions.filter(pl.col(column).is_null() | ~pl.col(column).is_between(0, n - 1))
            if outside.height:
                problems.append(f"{TRANSACTIONS_PARQUET}: {outside.height:,} rows have a {column} outside 0..{n - 1} "
                                f"(first: row with {column}={outside[column][0]})")
        for column in ("t_dat", "price"):
            nulls = transactions[column].null_count()
            if nulls:
                problems.append(f"{TRANSACTIONS_PARQUET}: {nulls:,} rows have no {column}")
    if problems:
        raise InputError(f"{tables}: {'; '.join(problems)} (run `hmgnn ingest --force` to rewrite the tables)")
    return frames[0], frames[1], frames[2]


def _compatible(actual: pl.DataType, expected: type[pl.DataType]) -> bool:
    # an all-null column (no such column in the input) or another integer/float width casts losslessly enough
    return (actual == expected or actual == pl.Null
            or (actual.is_integer() and expected.is_integer()) or (actual.is_float() and expected.is_float()))


def purchase_edges(transactions: pl.DataFrame) -> dict[str, torch.Tensor]:
    """One edge per purchase row: edge_index [2, n] int64 (customer, article), time (int32 days since
    2018-09-20), price (float32), sales_channel (int8, 0 where the input had none)."""
    n = transactions.height
    edge_index = np.empty((2, n), dtype=np.int64)
    edge_index[0] = transactions["customer_index"].to_numpy()
    edge_index[1] = transactions["article_index"].to_numpy()
    time = transactions.select((pl.col("t_dat").cast(pl.Int32) - _ORIGIN_DAY).cast(pl.Int32))
    return {
        "edge_index": torch.from_numpy(edge_index),
        "time": torch.from_numpy(time.to_series().to_numpy(writable=True)),
        "price": torch.from_numpy(transactions["price"].to_numpy(writable=True)),
        "sales_channel": torch.from_numpy(transactions["sales_channel_id"].fill_null(0).to_numpy(writable=True)),
    }


def _vocabulary(values: pl.Series, first: list[str] | None = None) -> list[str]:
    """`first` (in that order) then every other non-null value, sorted: a stable, deterministic column order."""
    first = first or []
    listed = set(first)
    return first + [v for v in values.drop_nulls().unique().sort().to_list() if v not in listed]


def _one_hot_into(x: np.ndarray, offset: int, values: pl.Series, vocabulary: list[str]) -> None:
    """Set x[row, offset + position of the row's value in `vocabulary`] = 1; null and other values stay 0."""
    codes = values.replace_strict(vocabulary, list(range(len(vocabulary))), default=-1,
                                  return_dtype=pl.Int32).fill_null(-1).to_numpy()
    rows = np.flatnonzero(codes >= 0)
    x[rows, offset + codes[rows]] = 1.0


def customer_features(customers: pl.DataFrame, names: list[str] | None = None,
                      age: tuple[float, float] | None = None) -> tuple[np.ndarray, list[str], dict[str, Any]]:
    """The reference project's 9 customer features plus a missing-age flag: FN, Active, club_member_status and
    fashion_news_frequency one-hot, age standardised around its median, age_missing.

    A missing age becomes the median (0 after scaling) with age_missing = 1; unknown customers (known=false) get
    the features of a customer with every field empty. `names` and `age` (median, std), where given, are the columns
    and the scaling of a graph built before (`hmgnn update` places new customers in it): a value outside its
    vocabulary is encoded as a missing one, all zeros in its block.
    """
    if names is None:
        club = _vocabulary(customers["club_member_status"], CLUB_MEMBER_STATUSES)
        news = _vocabulary(customers["fashion_news_frequency"], FASHION_NEWS_FREQUENCIES)
    else:
        club, news = _values_in(names, "club_member_status"), _values_in(names, "fashion_news_frequency")
    columns = (["FN", "Active"] + [f"club_member_status={v}" for v in club]
               + [f"fashion_news_frequency={v}" for v in news] + ["age", "age_missing"])
    if names is not None and columns != names:
        raise InputError(f"the customer feature columns ({len(names)}) are not the ones build-graph writes; "
                         "run `hmgnn build-graph --force` and train again")
    known = customers["known"].to_numpy()
    x = np.zeros((customers.height, len(columns)), dtype=np.float32)
    x[:, 0] = customers["FN"].fill_null(0).to_numpy()
    x[:, 1] = customers["Active"].fill_null(0).to_numpy()
    _one_hot_into(x, 2, customers["club_member_status"], club)
    _one_hot_into(x, 2 + len(club), customers["fashion_news_frequency"], news)

    years = customers["age"].cast(pl.Float64).to_numpy()
    has_age = known & ~np.isnan(years)
    median, std = age if age is not None else age_scaling(years, known)
    x[:, -2] = np.where(has_age, (np.nan_to_num(years) - median) / std, 0.0)
    x[:, -1] = ~has_age
    x[~known, :-1] = 0.0  # unknown customer: nothing is known, age included
    return x, columns, {"age_median": median, "age_std": round(std, 6)}


def age_scaling(years: np.ndarray, known: np.ndarray) -> tuple[float, float]:
    """(median, std) of the known customers' ages (float, NaN where missing): the age feature's scaling; std 1
    where it would be 0."""
    has_age = known & ~np.isnan(years)
    median = float(np.median(years[has_age])) if has_age.any() else 0.0
    std = float(years[has_age].std()) if has_age.sum() > 1 else 0.0
    return median, std if std > 0 else 1.0


def _values_in(names: list[str], column: str) -> list[str]:
    """The vocabulary of `column`'s one-hot block, read back from the feature names (`column=value`, in order)."""
    return [n.split("=", 1)[1] for n in names if n.split("=", 1)[0] == column and "=" in n]


def article_features(articles: pl.DataFrame, text_dim: int, text_max_features: int, seed: int,
                     names: list[str] | None = None,
                     text: np.ndarray | None = None) -> tuple[np.ndarray, list[str], dict[str, Any]]:
    """One-hot article metadata (`ARTICLE_CATEGORIES`, vocabularies from the known articles) followed by
    `text_dim` dimensions of a TF-IDF + truncated-SVD embedding of detail_desc; unknown articles are all zero.

    `names` and `text`, where given, are the columns of a graph built before and the text rows of these articles
    (`hmgnn update` places new articles in it: the SVD is not refit); a value outside a vocabulary is encoded as a
    missing one, all zeros in its block.
    """
    known = articles["known"].to_numpy()
    if names is None:
        known_rows = articles.filter(pl.col("known"))
        vocabularies = {c: _vocabulary(known_rows[c].str.strip_chars().replace("", None)) for c in ARTICLE_CATEGORIES}
    else:
        vocabularies = {c: _values_in(names, c) for c in ARTICLE_CATEGORIES}
        text_dim = sum(n.startswith("desc_svd_") for n in names)
    columns = [f"{c}={v}" for c, vocab in vocabularies.items() for v in vocab]
    columns += [f"desc_svd_{i}" for i in range(text_dim)]
    if names is not None and columns != names:
        raise InputError(f"the article feature columns ({len(names)}) are not the ones build-graph writes; "
                         "run `hmgnn build-graph --force` and train again")
    x = np.zeros((articles.height, len(columns)), dtype=np.float32)
    offset = 0
    for column, vocab in vocabularies.items():
        _one_hot_into(x, offset, articles[column].str.strip_chars(), vocab)
        offset += len(vocab)
    stats: dict[str, Any] = {}
    if text is None:
        text, stats = description_embedding(articles["detail_desc"], text_dim, text_max_features, seed)
    x[:, offset:] = text
    x[~known] = 0.0
    return x, columns, stats


def description_embedding(descriptions: pl.Series, dim: int, max_features: int,
                          seed: int) -> tuple[np.ndarray, dict[str, Any]]:
    """A unit-length `dim`-dimensional LSA embedding (TF-IDF, then truncated SVD) of each description.

    Null, empty or stop-words-only descriptions get zeros; when the vocabulary or the number of distinct
    descriptions is smaller than `dim`, the last dimensions stay zero so the feature columns never change.
    """
    out = np.zeros((descriptions.len(), dim), dtype=np.float32)
    stats: dict[str, Any] = {"text_documents": 0, "text_vocabulary": 0, "text_components": 0}
    if dim == 0:
        return out, stats
    from sklearn.decomposition import TruncatedSVD
    from sklearn.feature_extraction.text import TfidfVectorizer
    from sklearn.utils.extmath import svd_flip

    text = descriptions.str.strip_chars().replace("", None)
    # fit on distinct descriptions: colour variants of one product share one, and should not weigh more
    documents = text.drop_nulls().unique().sort().to_list()
    stats["text_documents"] = len(documents)
    if not documents:
        return out, stats
    try:
        tfidf = TfidfVectorizer(max_features=max_features, stop_words="english", sublinear_tf=True,
                                dtype=np.float32).fit_transform(documents)
    except ValueError:  # no usable word at all: every description is stop words or punctuation
        return out, stats
    k = min(dim, *tfidf.shape)
    if min(tfidf.shape) <= dim:
        # tiny vocabulary or few descriptions: an exact SVD of the small dense matrix (TruncatedSVD needs more)
        u, s, vt = np.linalg.svd(tfidf.toarray(), full_matrices=False)
        u, vt = svd_flip(u, vt, u_based_decision=False)
        embedding = u[:, :k] * s[:k]
    else:
        embedding = TruncatedSVD(k, algorithm="randomized", n_iter=5, random_state=seed).fit_transform(tfidf)
    norms = np.linalg.norm(embedding, axis=1, keepdims=True)
    embedding = np.divide(embedding, norms, out=np.zeros_like(embedding), where=norms > 0)
    codes = text.replace_strict(documents, list(range(len(documents))), default=-1,
                                return_dtype=pl.Int32).fill_null(-1).to_numpy()
    rows = np.flatnonzero(codes >= 0)
    out[rows, :k] = embedding[codes[rows]]
    stats.update(text_vocabulary=int(tfidf.shape[1]), text_components=int(k))
    return out, stats

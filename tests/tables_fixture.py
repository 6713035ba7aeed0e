"""A generated `tables/` folder in the exact schema of docs/CONTRACT.md, for tests and benchmarks of the steps
after ingest. Vectorised, so the same function makes a 3,000-row test set or the 2.3M-row seed-scale benchmark.

Usage: `from tables_fixture import make_tables; make_tables(tmp_path / "tables", 200, 100, 3000, seed=0)`.
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import numpy as np
import polars as pl

TRANSACTIONS_PARQUET = "transactions.parquet"
CUSTOMERS_PARQUET = "customers.parquet"
ARTICLES_PARQUET = "articles.parquet"

# (code column, name column, Kaggle's number of values, a few real names to start the vocabulary with)
_ARTICLE_CATEGORIES: list[tuple[str | None, str, int, list[str]]] = [
    ("product_type_no", "product_type_name", 131, ["Trousers", "Dress", "Sweater", "T-shirt", "Bra", "Socks"]),
    (None, "product_group_name", 19, ["Garment Upper body", "Garment Lower body", "Underwear", "Accessories"]),
    ("graphical_appearance_no", "graphical_appearance_name", 30, ["Solid", "All over pattern", "Stripe"]),
    ("colour_group_code", "colour_group_name", 50, ["Black", "White", "Dark Blue", "Light Pink"]),
    ("perceived_colour_value_id", "perceived_colour_value_name", 8, ["Dark", "Light", "Dusty Light", "Medium"]),
    ("perceived_colour_master_id", "perceived_colour_master_name", 20, ["Black", "Blue", "White", "Pink"]),
    ("department_no", "department_name", 250, ["Jersey Basic", "Trousers", "Swimwear"]),
    (None, "index_name", 10, ["Ladieswear", "Divided", "Menswear", "Children Sizes 92-140"]),
    ("index_group_no", "index_group_name", 5, ["Ladieswear", "Divided", "Menswear", "Sport", "Baby/Children"]),
    ("section_no", "section_name", 56, ["Womens Everyday Basics", "Divided Basics", "Mens Underwear"]),
    ("garment_group_no", "garment_group_name", 21, ["Jersey Basic", "Trousers", "Knitwear"]),
]
_WORDS = ("the a with and in of soft jersey cotton top dress trousers high waist short sleeves long "
          "round neckline buttons zip pockets lined fitted wide legs elasticated waistband denim knitted "
          "fine rib hem cuffs hood drawstring glitter print stretch slim regular relaxed lace straps "
          "adjustable padded cups viscose wool blend ankle length").split()


def make_tables(path: str | Path, n_customers: int = 200, n_articles: int = 100, n_rows: int = 3000,
                seed: int = 0, start: str = "2020-06-01", end: str = "2020-09-22",
                n_unknown_customers: int = 2, n_unknown_articles: int = 2) -> Path:
    """Write transactions/customers/articles.parquet to `path` (CONTRACT.md schema) and return `path`.

    Args:
        n_customers, n_articles: known entities (from the metadata files); unknown ones are appended after them.
        n_rows: purchase rows, drawn between `start` and `end` (inclusive) with skewed customer and article
            popularity; every date of the range gets at least one row when n_rows allows it.
        n_unknown_customers, n_unknown_articles: rows with known=false (all metadata null), referenced by a
            few purchases.
    """
    path = Path(path)
    path.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)

    # customers: known ones, then unknown ones with every field empty
    nc = n_customers + n_unknown_customers
    known_c = np.arange(nc) < n_customers
    club = rng.choice(np.array(["ACTIVE", "PRE-CREATE", "LEFT CLUB", None], dtype=object), nc, p=[.9, .07, .01, .02])
    news = rng.choice(np.array(["NONE", "Regularly", "Monthly", None], dtype=object), nc, p=[.63, .35, .01, .01])
    age = rng.integers(16, 90, nc).astype(float)
    age[(rng.random(nc) < 0.05) | ~known_c] = np.nan
    club[~known_c] = None
    news[~known_c] = None
    customers = pl.DataFrame({
        "customer_index": np.arange(nc, dtype=np.int32),
        "customer_id": [rng.bytes(32).hex() for _ in range(nc)],
        "FN": np.where(known_c & (rng.random(nc) < 0.35), 1, 0).astype(np.int8),
        "Active": np.where(known_c & (rng.random(nc) < 0.33), 1, 0).astype(np.int8),
        "club_member_status": pl.Series(club.tolist(), dtype=pl.String),
        "fashion_news_frequency": pl.Series(news.tolist(), dtype=pl.String),
        "age": pl.Series(age, nan_to_null=True).cast(pl.Int16),
        "postal_code": pl.Series([rng.bytes(32).hex() if k else None for k in known_c], dtype=pl.String),
        "known": known_c,
    })

    # articles: Kaggle columns in Kaggle order; products of ~2 colour variants share a description
    na = n_articles + n_unknown_articles
    known_a = np.arange(na) < n_articles
    product = np.sort(rng.integers(0, max(1, n_articles // 2), na))
    cols: dict[str, pl.Series] = {
        "article_index": pl.Series(np.arange(na, dtype=np.int32)),
        "article_id": pl.Series((108775015 + np.arange(na) * 1000).astype(np.int64)),
        "product_code": pl.Series([108775 + int(p) if k else None for p, k in zip(product, known_a)], dtype=pl.Int32),
        "prod_name": pl.Series([f"Product {p}" if k else None for p, k in zip(product, known_a)], dtype=pl.String),
    }
    for code_col, name_col, size, real in _ARTICLE_CATEGORIES:
        names = np.array(real + [f"{name_col.removesuffix('_name')} {i}" for i in range(len(real), size)], dtype=object)
        weights = 1.0 / np.arange(1, size + 1)
        pick = rng.choice(size, na, p=weights / weights.sum())
        if code_col is not None:
            cols[code_col] = pl.Series([int(p) + 1 if k else None for p, k in zip(pick, known_a)], dtype=pl.Int32)
        cols[name_col] = pl.Series([names[p] if k else None for p, k in zip(pick, known_a)], dtype=pl.String)
        if name_col == "index_name":  # index_code (a letter) sits just before index_name in Kaggle's order
            cols["index_code"] = pl.Series([chr(65 + p) if k else None for p, k in zip(pick, known_a)], dtype=pl.String)
    n_products = int(product.max()) + 1
    lengths = rng.integers(6, 30, n_products)
    words = rng.integers(0, len(_WORDS), int(lengths.sum()))
    bounds = np.concatenate([[0], np.cumsum(lengths)])
    product_desc: list[str | None] = [" ".join(_WORDS[w] for w in words[bounds[i]:bounds[i + 1]]) for i in range(n_products)]
    odd = rng.random(n_products)
    for i in np.flatnonzero(odd < 0.02):
        product_desc[i] = None if odd[i] < 0.01 else ""  # Kaggle has a few empty descriptions
    cols["detail_desc"] = pl.Series([product_desc[p] if k else None for p, k in zip(product, known_a)], dtype=pl.String)
    cols["known"] = pl.Series(known_a)
    order = ["article_index", "article_id", "product_code", "prod_name", "product_type_no", "product_type_name",
             "product_group_name", "graphical_appearance_no", "graphical_appearance_name", "colour_group_code",
             "colour_group_name", "perceived_colour_value_id", "perceived_colour_value_name",
             "perceived_colour_master_id", "perceived_colour_master_name", "department_no", "department_name",
             "index_code", "index_name", "index_group_no", "index_group_name", "section_no", "section_name",
             "garment_group_no", "garment_group_name", "detail_desc", "known"]
    articles = pl.DataFrame({name: cols[name].alias(name) for name in order})

    # transactions: skewed popularity, every day covered, sorted by t_dat then customer_index
    first, last = dt.date.fromisoformat(start), dt.date.fromisoformat(end)
    n_days = (last - first).days + 1
    day = rng.integers(0, n_days, n_rows)
    day[:min(n_days, n_rows)] = np.arange(min(n_days, n_rows))
    customer = np.minimum((rng.pareto(1.5, n_rows) * n_customers / 8).astype(np.int64), n_customers - 1)
    customer = rng.permutation(n_customers)[customer]
    article = np.minimum((rng.pareto(1.2, n_rows) * n_articles / 10).astype(np.int64), n_articles - 1)
    article = rng.permutation(n_articles)[article]
    unknown_rows = rng.random(n_rows) < 0.002
    if n_unknown_customers:
        customer[unknown_rows] = rng.integers(n_customers, nc, int(unknown_rows.sum()))
    if n_unknown_articles:
        article[unknown_rows] = rng.integers(n_articles, na, int(unknown_rows.sum()))
    transactions = pl.DataFrame({
        "customer_index": customer.astype(np.int32),
        "article_index": article.astype(np.int32),
        "t_dat": pl.Series((day + (first - dt.date(1970, 1, 1)).days).astype(np.int32)).cast(pl.Date),
        "price": rng.gamma(2.0, 0.014, n_rows).astype(np.float32),
        "sales_channel_id": rng.choice(np.array([1, 2], dtype=np.int8), n_rows, p=[0.3, 0.7]),
    }).sort("t_dat", "customer_index", maintain_order=True)

    transactions.write_parquet(path / TRANSACTIONS_PARQUET)
    customers.write_parquet(path / CUSTOMERS_PARQUET)
    articles.write_parquet(path / ARTICLES_PARQUET)
    return path


# Small, fast training settings shared by the tests that need a trained model. No held-out label customers: on
# these random tables a baseline can rank them better than the gnn, and `auto` would then answer with it, which the
# tests of `auto`'s choice cover on their own (test_train.py).
FAST_TRAIN = ["train.epochs=3", "train.patience=3", "train.hidden=16", "train.batch_size=4096", "graph.text_dim=4",
              "ranker.trees=20", "ranker.holdout=0"]


def make_split_workdir(workdir: Path) -> Path:
    """A workdir with tables/, graph/ and split/ (400 customers, 150 articles, 6,000 purchases), ready to train."""
    from hmgnn import graph, sample
    from hmgnn.config import load_config

    make_tables(workdir / "tables", n_customers=400, n_articles=150, n_rows=6000, seed=3)
    cfg = load_config(None, FAST_TRAIN, workdir=workdir)
    graph.run(cfg)
    sample.run(cfg)
    return workdir

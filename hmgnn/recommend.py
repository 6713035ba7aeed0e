"""`hmgnn recommend`: top-k articles for one customer (a table or JSON) or for every customer (the Kaggle
submission CSV, or parquet), from a model fit on all of tables/transactions.parquet (the deployed setting)."""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl

from hmgnn import answers
from hmgnn import artifacts as A
from hmgnn.answers import (  # noqa: F401 (re-exported)
    DISPLAY_COLUMNS,
    UNKNOWN_CUSTOMER,
    CustomerRecommendations,
    check_customer_id,
    render_table,
)
from hmgnn.config import MAX_K, Config, RecommendConfig
from hmgnn.console import info, progress
from hmgnn.errors import ConfigUsageError, UsageError
from hmgnn.models.base import PARALLEL_BATCHES, Recommender
from hmgnn.models.reasons import Reason
from hmgnn.portable import PURCHASE_COLUMNS
from hmgnn.registry import AUTO, create_model, model_class, resolve_model_name

OUTPUT_SUFFIXES = (".csv", ".parquet")
MAX_K_ALL = 1_000
"""The most articles per customer `--all` writes: the file grows with k times every customer."""


def k_limit(n_articles: int) -> int:
    """The most articles one customer's answer may ask for, in every interface (CLI, HTTP, Python): the catalogue,
    and config.MAX_K. The default k stays valid on a catalogue smaller than it (fewer articles come back); beyond
    it, a k larger than the catalogue is a mistake that would only allocate empty slots."""
    return min(MAX_K, max(n_articles, RecommendConfig.k))


def check_k(k: object, n_articles: int, name: str = "k") -> int:
    """`k` checked as every interface checks it: an int from 1 to `k_limit(n_articles)`; else a TypeError or a
    UsageError (a ValueError) that names the argument `name`."""
    if isinstance(k, bool) or not isinstance(k, (int, np.integer)):
        raise TypeError(f"{name} must be an int (articles per answer), got {type(k).__name__} {k!r}")
    limit = k_limit(n_articles)
    if not 1 <= k <= limit:
        raise UsageError(f"{name} must be from 1 to {limit:,} (the {n_articles:,} articles, at most {MAX_K:,}), "
                         f"got {k:,}")
    return int(k)


def model_name(cfg: Config, name: str | None = None) -> str:
    """The model that answers: `name` (default cfg.recommend.model), with `auto` resolved (see
    `hmgnn.registry.resolve_model_name`) and checked, before any data is read."""
    asked = name or cfg.recommend.model
    resolved = resolve_model_name(asked, cfg.workdir)
    model_class(resolved)  # a bad model name fails here
    note = _auto_note(cfg, asked, resolved)
    if note:
        info(note)
    return resolved


def _auto_note(cfg: Config, asked: str, resolved: str) -> str | None:
    """What `recommend` says when `auto` answers with another model than the trained gnn."""
    where = A.locate(cfg.workdir)
    trained = where.trained
    if asked == AUTO and not trained and resolved != "gnn":
        return (f"no trained model in {where.model}: recommending with {resolved} "
                "(`hmgnn train` trains the gnn, the default once it exists)")
    if asked == AUTO and resolved not in ("gnn", "reference"):
        return (f"recommend.model = auto: answering with {resolved}, which ranked the held-out label customers "
                "better than the gnn when it was trained (the model card, README.md, says by how much); --model gnn "
                "asks for the gnn")
    return None


def fit_model(cfg: Config, name: str | None = None, k: int | None = None) -> tuple[Recommender, Path]:
    """Model `name` (as `model_name` resolves it; default: cfg.recommend.model, resolved here) fit on every purchase
    in tables/ (the deployed setting), and the folder those tables were read from (<workdir>/tables, or a model
    folder itself); `k`, the articles to be asked for per customer, is checked against the catalogue before anything
    is fit."""
    where = A.locate(cfg.workdir)
    tables = where.tables
    if where.model_folder:  # a self-contained model folder: its own copies, checked as a whole
        from hmgnn.portable import check_folder

        check_folder(tables)
    else:
        A.require(tables, [A.TRANSACTIONS_PARQUET, A.CUSTOMERS_PARQUET, A.ARTICLES_PARQUET], A.TABLES)
        A.check_lineage([tables])
    summary = A.TablesSummary.read(tables)
    limit = k_limit(summary.n_articles)
    if k is not None and k > limit:
        raise ConfigUsageError(f"recommend.k = {k:,} is more than the {summary.n_articles:,} articles in "
                          f"{tables / A.ARTICLES_PARQUET}; ask for at most {limit:,}")
    path = tables / A.TRANSACTIONS_PARQUET
    # the prices too, where the table has them: the ranker learned its price features from them
    present = pl.read_parquet_schema(path)
    purchases = pl.read_parquet(path, columns=[c for c in PURCHASE_COLUMNS if c in present])
    model = create_model(name or model_name(cfg), cfg).fit(summary.interactions(purchases))
    return model, tables


def _article_ids(tables: Path) -> np.ndarray:
    frame = pl.read_parquet(tables / A.ARTICLES_PARQUET, columns=["article_index", "article_id"]).sort("article_index")
    return frame["article_id"].to_numpy()


def recommend_customer(cfg: Config, customer_id: str, filter_bought: bool = False) -> CustomerRecommendations:
    """Top cfg.recommend.k articles for one customer id (with `filter_bought`, none that they bought); an id
    without history gets the labelled fallback."""
    cid = check_customer_id(customer_id)
    name = model_name(cfg)  # a bad model name fails before the data is read
    model, tables = fit_model(cfg, name, k=cfg.recommend.k)
    return answer(model, name, tables, cid, cfg.recommend.k, filter_bought)


def answer(model: Recommender, name: str, tables: Path, cid: str, k: int,
           filter_bought: bool = False) -> CustomerRecommendations:
    """`recommend_customer`'s answer from a fitted `model` (called `name`), the ids read from `tables`."""
    row = (pl.scan_parquet(tables / A.CUSTOMERS_PARQUET).filter(pl.col("customer_id") == cid)
           .select("customer_index").collect())
    article_index, scores, fallback, reasons = rank_customer(model, int(row.item(0, 0)) if row.height else None, k,
                                                             filter_bought)
    catalogue = (pl.read_parquet(tables / A.ARTICLES_PARQUET, columns=["article_index", "article_id", *DISPLAY_COLUMNS])
                 .sort("article_index"))
    article_ids = catalogue["article_id"]
    recs = [{"rank": i + 1, "article_id": A.article_label(a['article_id']), **{c: a[c] for c in DISPLAY_COLUMNS},
             "score": round(float(s), 6), **explained(r, lambda j: A.article_label(article_ids[j]))}
            for i, (a, s, r) in enumerate(zip(catalogue[article_index].iter_rows(named=True), scores, reasons))]
    return CustomerRecommendations(cid, name, k, fallback, recs)


def store_answers(cfg: Config, step: str) -> Path | None:
    """`precompute`, where `recommend.precompute` asks for it and the stored answers are not already current for
    the configured model and k; says where they went and what it took (`step`: who asks)."""
    import time

    if not cfg.recommend.precompute or not A.locate(cfg.workdir).trained:
        return None
    meta = answers.current(cfg.workdir)
    if meta and cfg.recommend.model in meta.get("asked", ()) and meta.get("k") == cfg.recommend.k:
        return None
    started = time.perf_counter()
    stored = precompute(cfg)
    info(f"[green]{step}[/green]: stored every customer's answer in {stored} ({time.perf_counter() - started:.0f} s; "
         "`recommend --customer-id` reads it while the model and tables stay as they are)")
    return stored


def precompute(cfg: Config) -> Path:
    """Every customer's answer (and the answer to an unknown id) from the model `recommend` answers with by default
    (cfg.recommend.model, k = cfg.recommend.k), stored beside the model for `answers.lookup`: what
    `recommend_customer` gives, row for row."""
    import pyarrow as pa

    asked = cfg.recommend.model
    name = model_name(cfg)
    k = cfg.recommend.k
    model, tables = fit_model(cfg, name, k=k)
    customers = pl.read_parquet(tables / A.CUSTOMERS_PARQUET, columns=["customer_index", "customer_id"]).sort("customer_id")
    catalogue = (pl.read_parquet(tables / A.ARTICLES_PARQUET, columns=["article_index", "article_id", *DISPLAY_COLUMNS])
                 .sort("article_index"))
    labels = [A.article_label(a) for a in catalogue["article_id"].to_list()]
    shown = {c: catalogue[c].to_list() for c in DISPLAY_COLUMNS}
    columns: dict[str, list] = {c: [] for c in ("customer_id", "rank", "article_id", *DISPLAY_COLUMNS, "score", "why",
                                                "sources", "fallback")}

    def add(customer_id: str, ids: np.ndarray, scores: np.ndarray, reasons: list[Reason], fallback: str | None) -> None:
        keep = ids >= 0
        for rank, (a, score, reason) in enumerate(zip(ids[keep].tolist(), scores[keep].tolist(), reasons), 1):
            columns["customer_id"].append(customer_id)
            columns["rank"].append(rank)
            columns["article_id"].append(labels[a])
            for c in DISPLAY_COLUMNS:
                columns[c].append(shown[c][a])
            columns["score"].append(score)
            for key, value in explained(reason, labels.__getitem__).items():
                columns[key].append(value)
            columns["fallback"].append(fallback)

    article_index, scores = model.recommend_unknown(k=k)
    add(answers.UNKNOWN_KEY, article_index, scores, model.explain_unknown(article_index), UNKNOWN_CUSTOMER)
    index, ids = customers["customer_index"].to_numpy(), customers["customer_id"].to_list()
    step = max(1, min(cfg.recommend.batch_size * PARALLEL_BATCHES, len(index) // 100))
    with progress(unit="customers") as bar:
        task = bar.add_task(f"answers ({model.name})", total=len(index))
        for start in range(0, len(index), step):
            chunk = index[start:start + step]
            top, values, reasons = model.recommend_explained(chunk, k=k)
            for row, c in enumerate(chunk.tolist()):
                add(ids[start + row], top[row], values[row], reasons[row], model.fallback_reason(c))
            bar.advance(task, len(chunk))
    schema = pa.schema([("customer_id", pa.string()), ("rank", pa.int16()), ("article_id", pa.string()),
                        *((c, pa.string()) for c in DISPLAY_COLUMNS),
                        ("score", pa.float32()), ("why", pa.string()), ("sources", pa.list_(pa.string())),
                        ("fallback", pa.string())])
    table = pa.table(columns, schema=schema)
    return answers.write(cfg.workdir, table, model=name, asked=list(dict.fromkeys([asked, name])), k=k,
                         note=_auto_note(cfg, asked, name), customers=len(index))


def explained(reason: Reason, article_id: Callable[[int], str]) -> dict[str, Any]:
    """The members every interface adds to a recommended article: `why` (a sentence) and `sources` (the candidate
    sources that proposed it, strongest first); `article_id` gives an article_index's 10-digit id."""
    return {"why": reason.why(article_id), "sources": list(reason.sources)}


def rank_customer(model: Recommender, customer_index: int | None, k: int,
                  filter_bought: bool = False) -> tuple[np.ndarray, np.ndarray, str | None, list[Reason]]:
    """One customer's top-k (article indices, scores; empty slots dropped), the fallback reason, if any, and the
    `Reason` of each article.

    `customer_index` None means the id is not in the id maps: the global bestsellers, labelled as such.
    """
    if customer_index is None:
        article_index, scores = model.recommend_unknown(k=k)
        fallback: str | None = UNKNOWN_CUSTOMER
        reasons = model.explain_unknown(article_index)
    else:
        article_index, scores, reasons = model.recommend_explained(customer_index, k=k,
                                                                   filter_already_bought=filter_bought)
        fallback = model.fallback_reason(customer_index)
    keep = article_index >= 0
    return article_index[keep], scores[keep], fallback, reasons


def write_all(cfg: Config, out: Path, filter_bought: bool = False) -> Path:
    """Recommendations for every customer in customers.parquet (with `filter_bought`, none that the customer
    bought), streamed to `out` (.csv or .parquet)."""
    out = Path(out)
    if out.suffix not in OUTPUT_SUFFIXES:
        raise UsageError(f"--out {out}: write a .csv (Kaggle submission) or a .parquet file")
    if cfg.recommend.k > MAX_K_ALL:
        raise ConfigUsageError(f"recommend.k = {cfg.recommend.k:,} with --all: at most {MAX_K_ALL:,} articles per "
                          "customer are written for everybody (a Kaggle submission needs 12)")
    model, tables = fit_model(cfg, model_name(cfg), k=cfg.recommend.k)
    customers = pl.read_parquet(tables / A.CUSTOMERS_PARQUET, columns=["customer_index", "customer_id"])
    index = customers["customer_index"].to_numpy()
    cold = int(model.is_cold(index).sum())
    if cold:
        info(f"{cold:,} of {len(index):,} customers have no purchase history: they get their age band's "
             "bestsellers (the cold-start fallback)")
    return write_recommendations(model, index, customers["customer_id"].to_numpy(), _article_ids(tables), out,
                                 cfg.recommend.k, cfg.recommend.batch_size, filter_bought=filter_bought)


def write_recommendations(model: Recommender, customer_index: np.ndarray, customer_ids: np.ndarray,
                          article_ids: np.ndarray, out: Path, k: int = 12, batch_size: int = 512,
                          show_progress: bool = True, filter_bought: bool = False) -> Path:
    """Stream `model`'s top-k for each customer to `out` in batches (memory stays flat), via a temporary name.

    .csv: the Kaggle submission (customer_id,prediction with k space-separated 10-digit article ids);
    .parquet: one row per (customer_id, rank, article_id as a 10-digit string, score).
    `filter_bought` leaves out the articles each customer bought in the data the model was fit on.
    """
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    A.sweep_leftovers(out)  # what an earlier run killed mid-write left (kill -9 runs no cleanup)
    # formatted once; index -1 (an empty slot) picks the trailing ""
    labels = np.array([A.article_label(a) for a in article_ids.tolist()] + [""], dtype=object)

    def write(tmp: Path) -> None:
        writer = _ParquetWriter(tmp, labels) if out.suffix == ".parquet" else _CsvWriter(tmp, labels)
        try:
            # one thread writes a chunk's rows while the next chunk is ranked
            bar_or_none = progress(unit="customers") if show_progress else contextlib.nullcontext()
            with bar_or_none as bar, ThreadPoolExecutor(1) as side:
                task = bar.add_task(f"recommend ({model.name})", total=len(customer_index)) if bar else None
                # `recommend` ranks PARALLEL_BATCHES batches side by side: many per call, so that they seldom wait
                # for each other at the end of a call; but a call is at most 1% of the customers, so that the bar
                # moves in small steps
                step = max(1, min(batch_size * PARALLEL_BATCHES * 8, len(customer_index) // 100))
                written: Future | None = None
                for start in range(0, len(customer_index), step):
                    stop = start + step
                    ids, scores = model.recommend(customer_index[start:stop], k=k, batch_size=batch_size,
                                                  filter_already_bought=filter_bought)
                    if written is not None:
                        written.result()
                    written = side.submit(writer.write, customer_ids[start:stop], ids, scores)
                    if bar:
                        bar.advance(task, len(ids))
                if written is not None:
                    written.result()
        finally:
            writer.close()

    A.atomic_write(out, write)
    return out


class _CsvWriter:
    def __init__(self, path: Path, labels: np.ndarray) -> None:
        self.file = path.open("w", encoding="utf-8", newline="\n")
        self.file.write("customer_id,prediction\n")
        self.labels = labels

    def write(self, customer_ids: np.ndarray, ids: np.ndarray, scores: np.ndarray) -> None:
        rows = self.labels[ids].tolist()
        self.file.write("".join(f"{c},{' '.join(r).rstrip()}\n" for c, r in zip(customer_ids.tolist(), rows)))

    def close(self) -> None:
        self.file.close()


class _ParquetWriter:
    def __init__(self, path: Path, labels: np.ndarray) -> None:
        import pyarrow as pa
        import pyarrow.parquet as pq

        self.pa, self.labels = pa, labels
        # article ids as the Kaggle files write them: 10-digit, zero-padded strings
        self.schema = pa.schema([("customer_id", pa.string()), ("rank", pa.int16()), ("article_id", pa.string()),
                                 ("score", pa.float32())])
        self.writer = pq.ParquetWriter(path, self.schema)

    def write(self, customer_ids: np.ndarray, ids: np.ndarray, scores: np.ndarray) -> None:
        keep = ids >= 0
        row, rank = np.nonzero(keep)
        self.writer.write_table(self.pa.table({
            "customer_id": self.pa.array(customer_ids[row], self.pa.string()),
            "rank": (rank + 1).astype(np.int16),
            "article_id": self.pa.array(self.labels[ids[keep]], self.pa.string()),
            "score": scores[keep].astype(np.float32),
        }, schema=self.schema))

    def close(self) -> None:
        self.writer.close()


def run(cfg: Config, customer_id: str | None = None, all_customers: bool = False,
        out: Path | None = None, filter_bought: bool = False) -> CustomerRecommendations | Path:
    """One customer's recommendations (returned), or every customer's written to `out` (its path returned); with
    `filter_bought`, none of the articles the customer bought. Options that do not fit together are a UsageError."""
    if customer_id is not None and all_customers:
        raise UsageError("pass either --customer-id ID or --all --out FILE, not both")
    if customer_id is None and not all_customers:
        raise UsageError("pass either --customer-id ID or --all --out FILE")
    if all_customers:
        if out is None:
            raise UsageError("--all needs --out: submission.csv (Kaggle format) or recs.parquet")
        return write_all(cfg, out, filter_bought)
    if out is not None:
        raise UsageError("--out goes with --all; for one customer use --json to get machine-readable output")
    return recommend_customer(cfg, customer_id, filter_bought)

"""`hmgnn sample`: the graph's purchases split by time into history / validation / test, without leakage.

The purchases are read from tables/transactions.parquet, the rows build-graph made the graph's edges of (one
edge per row, checked by the lineage of graph/), so the graph itself is never loaded and turned back into a table.

Also the optional seeded customer downsampling and the fixed negatives every model is scored on.
"""

from __future__ import annotations

import datetime as dt
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import polars as pl

from hmgnn.artifacts import (ARTICLES_PARQUET, CUSTOMERS_KEPT_PARQUET, CUSTOMERS_PARQUET, GRAPH, GRAPH_PT,
                             HISTORY_PARQUET, SPLIT, TABLES, TEST_PAIRS_PARQUET, TEST_PARQUET, TRANSACTIONS_PARQUET,
                             VALIDATION_PAIRS_PARQUET, VALIDATION_PARQUET, StepOutput, TablesSummary, check_lineage, require,
                             skip_if_current, step_dir)
from hmgnn.config import Config, SampleConfig
from hmgnn.console import info, progress
from hmgnn.errors import ConfigError, InputError
from hmgnn.graph import TRANSACTION_SCHEMA
from hmgnn.interactions import Windows

STEP = "sample"
# One random stream per purpose, so changing one option (say popularity_negatives) never changes other draws.
_DOWNSAMPLE, _VALIDATION_UNIFORM, _VALIDATION_POPULARITY, _TEST_UNIFORM, _TEST_POPULARITY = range(5)
_MAX_REDRAWS = 100


def time_windows(first: dt.date, last: dt.date, sample: SampleConfig) -> Windows:
    """The Kaggle-style windows for data from `first` to `last`; a ConfigError when they do not fit the data."""
    days = dt.timedelta
    span = f"the data's date range is {first} to {last}"
    if sample.cutoff:
        cutoff = dt.date.fromisoformat(sample.cutoff)
        if not first <= cutoff < last:
            raise ConfigError(f"sample.cutoff = {cutoff} is outside the data: {span}, and the test window needs at "
                              f"least one day after the cutoff (leave it empty for {last - days(sample.test_days)})")
        keys = f"sample.cutoff = {cutoff} with sample.val_days = {sample.val_days}"
    else:
        cutoff = last - days(sample.test_days)
        keys = f"sample.test_days = {sample.test_days} with sample.val_days = {sample.val_days}"
    val_start = cutoff - days(sample.val_days - 1)
    if val_start <= first:
        raise ConfigError(f"{keys} leaves no history: the validation window would start on {val_start} and {span}; "
                          "shorten the windows or set a later sample.cutoff")
    # a cutoff less than test_days before the data's end gives a shorter test window, never dates without data
    return Windows(first, val_start - days(1), val_start, cutoff, cutoff + days(1),
                   min(cutoff + days(sample.test_days), last))


def run(cfg: Config, inp: Path | None = None, out: Path | None = None, force: bool = False) -> Path:
    """Write `<workdir>/split` (history/validation/test, pairs with fixed negatives, kept customers) and return it."""
    started = time.perf_counter()
    graph_dir = Path(inp) if inp is not None else step_dir(cfg.workdir, GRAPH)
    out = Path(out) if out is not None else step_dir(cfg.workdir, SPLIT)
    tables_dir = graph_dir.parent / TABLES
    require(graph_dir, [GRAPH_PT], GRAPH)
    require(tables_dir, [TRANSACTIONS_PARQUET, CUSTOMERS_PARQUET, ARTICLES_PARQUET], TABLES)
    check_lineage([tables_dir, graph_dir])  # graph/ was built from these tables: its edges are their purchases
    step_config = cfg.section("sample")
    inputs = [tables_dir / TRANSACTIONS_PARQUET, graph_dir]
    if skip_if_current(out, STEP, step_config, inputs, force):
        return out
    sample = cfg.sample

    with progress(transient=True, unit="parts") as bar:
        task = bar.add_task("reading the purchases", total=4)
        summary = TablesSummary.read(tables_dir)
        n_customers, n_articles = summary.n_customers, summary.n_articles
        purchases = (pl.read_parquet(tables_dir / TRANSACTIONS_PARQUET, columns=list(TRANSACTION_SCHEMA))
                     .cast(TRANSACTION_SCHEMA))
        if purchases.height == 0:
            raise InputError(f"{tables_dir / TRANSACTIONS_PARQUET} has no purchases; check the transactions and run "
                             "`hmgnn ingest` and `hmgnn build-graph` again")
        first, last = purchases["t_dat"].min(), purchases["t_dat"].max()
        windows = time_windows(first, last, sample)

        bar.update(task, advance=1, description="downsampling customers")
        customer = purchases["customer_index"].to_numpy()
        kept = downsample(customer, n_customers, sample.customers, _rng(cfg.seed, _DOWNSAMPLE))
        if kept.size < n_customers:
            keep = np.zeros(n_customers, dtype=bool)
            keep[kept] = True
            # complete histories: a kept customer keeps every purchase, in every window
            purchases = purchases.filter(pl.Series(keep[customer]))
        del customer

        bar.update(task, advance=1, description="splitting by date")
        day = pl.col("t_dat")
        history = purchases.filter(day <= windows.history_end)
        validation = purchases.filter(day.is_between(windows.val_start, windows.val_end))
        test = purchases.filter(day.is_between(windows.test_start, windows.test_end))
        del purchases
        if history.height == 0:
            raise InputError(f"no purchase falls in the history window {windows.history_start} to "
                             f"{windows.history_end} (data: {first} to {last}); set an earlier sample.cutoff "
                             "or keep more customers (sample.customers)")
        for name, frame in (("validation", validation), ("test", test)):
            if frame.height == 0:
                info(f"[yellow]sample[/yellow]: the {name} window has no purchases")

        bar.update(task, advance=1, description="drawing negatives")
        # no leakage: popularity is counted on what a model may see before each window
        validation_pairs = window_pairs(validation, history, n_articles, sample.negatives,
                                        sample.popularity_negatives, cfg.seed, _VALIDATION_UNIFORM,
                                        _VALIDATION_POPULARITY)
        test_pairs = window_pairs(test, pl.concat([history, validation]), n_articles, sample.negatives,
                                  sample.popularity_negatives, cfg.seed, _TEST_UNIFORM, _TEST_POPULARITY)
        bar.update(task, advance=1)

    with StepOutput(out, STEP, cfg.to_dict(), step_config, inputs=inputs, started=started) as so:
        history.write_parquet(so.dir / HISTORY_PARQUET)
        validation.write_parquet(so.dir / VALIDATION_PARQUET)
        test.write_parquet(so.dir / TEST_PARQUET)
        validation_pairs.write_parquet(so.dir / VALIDATION_PAIRS_PARQUET)
        test_pairs.write_parquet(so.dir / TEST_PAIRS_PARQUET)
        pl.DataFrame({"customer_index": kept.astype(np.int32)}).write_parquet(so.dir / CUSTOMERS_KEPT_PARQUET)
        so.rows.update(history=history.height, validation=validation.height, test=test.height,
                       customers=n_customers, customers_kept=int(kept.size),
                       validation_pairs=validation_pairs.height, test_pairs=test_pairs.height,
                       validation_positives=int((validation_pairs["label"] == 1).sum()),
                       test_positives=int((test_pairs["label"] == 1).sum()))
        so.extra["windows"] = windows.as_dict()
        so.extra["data_range"] = {"start": first.isoformat(), "end": last.isoformat()}
    for name, start, end, frame in (("history", windows.history_start, windows.history_end, history),
                                    ("validation", windows.val_start, windows.val_end, validation),
                                    ("test", windows.test_start, windows.test_end, test)):
        info(f"sample: {name:<10} {start} .. {end}: {frame.height:,} purchases by "
             f"{frame['customer_index'].n_unique():,} customers")
    return out


def _rng(seed: int, stream: int) -> np.random.Generator:
    return np.random.default_rng([seed, stream])


def downsample(customer: np.ndarray, n_customers: int, size: int, rng: np.random.Generator) -> np.ndarray:
    """Sorted indices of the kept customers: `size` drawn without replacement among those with a purchase, or
    every customer when `size` is 0 or at least the number of buyers."""
    if size == 0:
        return np.arange(n_customers, dtype=np.int32)
    buyers = np.flatnonzero(np.bincount(customer, minlength=n_customers))
    if size >= buyers.size:
        info(f"[yellow]sample[/yellow]: sample.customers = {size:,} but only {buyers.size:,} customers have a "
             "purchase; keeping everybody")
        return np.arange(n_customers, dtype=np.int32)
    return np.sort(rng.choice(buyers, size=size, replace=False)).astype(np.int32)


def window_pairs(window: pl.DataFrame, before: pl.DataFrame, n_articles: int, negatives: int, popularity: bool,
                 seed: int, uniform_stream: int, popularity_stream: int) -> pl.DataFrame:
    """The distinct (customer, article) purchases of a window (label 1, kind `positive`), then `negatives`
    uniform negatives per positive for the same customer (kind `uniform`), then as many popularity-weighted
    ones (kind `popularity`, weighted by purchases in `before`) when `popularity` is set.

    A negative is never an article its customer bought in the window; negative j belongs to positive
    j // negatives.
    """
    customer = window["customer_index"].to_numpy().astype(np.int64)
    positive_keys = np.unique(customer * n_articles + window["article_index"].to_numpy())
    positive_customer, positive_article = np.divmod(positive_keys, n_articles)
    parts = [_pairs(positive_customer, positive_article, 1, "positive")]
    negative_customer = np.repeat(positive_customer, negatives)
    rng = _rng(seed, uniform_stream)
    parts.append(_pairs(*_negatives(negative_customer, positive_keys, n_articles,
                                    lambda n: rng.integers(0, n_articles, n)), 0, "uniform"))
    if popularity:
        cdf = np.cumsum(np.bincount(before["article_index"].to_numpy(), minlength=n_articles), dtype=np.float64)
        pop_rng = _rng(seed, popularity_stream)
        # inverse-CDF draws: articles nobody bought before the window are never drawn
        parts.append(_pairs(*_negatives(negative_customer, positive_keys, n_articles,
                                        lambda n: np.searchsorted(cdf, pop_rng.random(n) * cdf[-1], side="right")),
                            0, "popularity"))
    return pl.concat(parts)


def _negatives(customer: np.ndarray, positive_keys: np.ndarray, n_articles: int,
               draw: Callable[[int], np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """One drawn article per customer, redrawn while it is one of that customer's positives."""
    article = draw(customer.size).astype(np.int64)
    for _ in range(_MAX_REDRAWS):
        clash = np.flatnonzero(_is_member(customer * n_articles + article, positive_keys))
        if clash.size == 0:
            return customer, article
        article[clash] = draw(clash.size)
    # only a customer who bought (nearly) every drawable article gets here: drop what is left
    keep = ~_is_member(customer * n_articles + article, positive_keys)
    info(f"[yellow]sample[/yellow]: {int((~keep).sum())} negatives could not avoid the customer's own purchases; "
         "left out")
    return customer[keep], article[keep]


def _is_member(keys: np.ndarray, sorted_keys: np.ndarray) -> np.ndarray:
    if sorted_keys.size == 0:
        return np.zeros(keys.shape, dtype=bool)
    at = np.minimum(np.searchsorted(sorted_keys, keys), sorted_keys.size - 1)
    return sorted_keys[at] == keys


def _pairs(customer: np.ndarray, article: np.ndarray, label: int, kind: str) -> pl.DataFrame:
    return pl.DataFrame({
        "customer_index": customer.astype(np.int32),
        "article_index": article.astype(np.int32),
        "label": np.full(customer.size, label, dtype=np.int8),
    }).with_columns(kind=pl.lit(kind, dtype=pl.String))

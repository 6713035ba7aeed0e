"""Fitting the ranker: label windows, their (customer, candidate) rows and labels, and the LightGBM fit.

Each label window's features are computed as of the day before it (no leakage), with the GNN's message passing
over the purchases up to that day; `hmgnn train` stops the GNN's own training before the earliest window, so a
window's purchases were never the GNN's targets either.
"""

from __future__ import annotations

import datetime as dt
import time
from dataclasses import asdict
from typing import Any, Callable

import numpy as np
import polars as pl
import torch
from sklearn.metrics import roc_auc_score

from hmgnn.config import RankerConfig
from hmgnn.console import info, progress
from hmgnn.interactions import Interactions, LabelWindow
from hmgnn.models.base import run_starts
from hmgnn.ranking.candidates import (SOURCES, CandidatePairs, GNNScores, RandomWalk, candidate_pairs,
                                      non_candidate_score, trend_percentile)
from hmgnn.ranking.features import ArticleMeta, Snapshot
from hmgnn.ranking.pairs import feature_matrix, feature_names
from hmgnn.ranking.ranker import Ranker


def label_windows(purchases: Interactions, history_end: dt.date, val_end: dt.date, rc: RankerConfig,
                  min_history_days: int = 28) -> list[LabelWindow]:
    """The validation window, then earlier windows of the same length while the ranker needs more customers
    (`ranker.windows`, or `min_customers` up to `max_windows`), each keeping `min_history_days` of history."""
    days = (val_end - history_end).days
    first = purchases.t_dat.min().astype(dt.date)
    windows = [_counted(LabelWindow(history_end, val_end), purchases)]
    while True:
        enough = (len(windows) >= rc.windows if rc.windows else
                  len(windows) >= rc.max_windows or sum(w.customers for w in windows) >= rc.min_customers)
        as_of = windows[-1].as_of - dt.timedelta(days=days)
        if enough or (as_of - first).days < min_history_days:
            return windows
        windows.append(_counted(LabelWindow(as_of, windows[-1].as_of), purchases))


def _counted(window: LabelWindow, purchases: Interactions) -> LabelWindow:
    window.customers = len(window.labelled(purchases))
    return window


def window_rows(purchases: Interactions, window: LabelWindow, meta: ArticleMeta, sizes: dict[str, int],
                gnn: GNNScores | None, max_customers: int, seed: int,
                gnn_recent_days: int = 0) -> tuple[CandidatePairs, np.ndarray, Snapshot, dict[str, Any]]:
    """Candidates, features and labels of one window's labelled customers; and the candidates' recall."""
    snapshot = Snapshot(purchases, window.as_of, meta)
    customers = window.labelled(purchases)
    if len(customers) > max_customers:
        customers = np.sort(np.random.default_rng(seed).choice(customers, max_customers, replace=False))
    walk = RandomWalk(snapshot) if sizes.get("walk", 0) > 0 else None
    pairs = candidate_pairs(snapshot, customers, sizes, gnn=gnn, walk=walk, gnn_recent_days=gnn_recent_days)
    inside = window.inside(purchases) & np.isin(purchases.customer_index, customers)
    n = purchases.n_articles
    truth = np.unique(purchases.customer_index[inside].astype(np.int64) * n + purchases.article_index[inside])
    labels = np.isin(pairs.customer * n + pairs.article, truth).astype(np.float32)
    recall = candidate_recall(pairs, truth, n)
    return pairs, labels, snapshot, {"customers": int(len(customers)), "pairs": int(len(labels)),
                                     "positives": int(labels.sum()), "purchases": int(len(truth)),
                                     "recall": recall}


def candidate_recall(pairs: CandidatePairs, truth: np.ndarray, n_articles: int) -> dict[str, float]:
    """Share of the window's distinct (customer, article) purchases among the candidates, per source and in all."""
    keys = pairs.customer * n_articles + pairs.article
    found = np.isin(keys, truth)
    out = {"all": float(found.sum() / max(len(truth), 1))}
    for bit, name in enumerate(SOURCES):
        mine = (pairs.sources >> bit) & 1 == 1
        if mine.any():
            out[name] = float((found & mine).sum() / max(len(truth), 1))
    return out


def fit_ranker(purchases: Interactions, windows: list[LabelWindow], meta: ArticleMeta, rc: RankerConfig,
               gnn_as_of: Callable[[Interactions, dt.date], GNNScores] | None, seed: int) -> tuple[Ranker, dict[str, Any]]:
    """Rows from every label window (customers with no bought candidate dropped: they cannot teach an order),
    then one LightGBM fit. `gnn_as_of(purchases, day)`: the GNN's scores with message passing up to that day."""
    sizes = rc.sizes()
    parts: list[tuple[np.ndarray, np.ndarray, np.ndarray]] = []
    report: list[dict[str, Any]] = []
    names: list[str] = []
    with progress(transient=True) as bar:
        task = bar.add_task("ranker: candidates and features per label window", total=len(windows))
        for i, window in enumerate(windows):
            parts_i, report_i, names = _window_part(purchases, window, meta, sizes, gnn_as_of, rc.max_customers,
                                                    seed + i, rc.gnn_recent_days)
            parts.append(parts_i)
            report.append(report_i)
            bar.advance(task)
        x = np.vstack([p[0] for p in parts])
        labels = np.concatenate([p[1] for p in parts])
        groups = np.concatenate([p[2] for p in parts])
        if not len(groups) or labels.min() == labels.max():
            raise ValueError("no customer of the ranker's label windows bought one of their candidates")
        t0 = time.perf_counter()
        trees = bar.add_task(f"ranker: {rc.objective} on {len(labels):,} rows", total=rc.trees)
        ranker = Ranker.fit(x, labels, groups, names, objective=rc.objective, trees=rc.trees,
                            learning_rate=rc.learning_rate, leaves=rc.leaves, seed=seed,
                            on_tree=lambda: bar.advance(trees))
    info(f"ranker: {rc.objective} on {len(labels):,} rows of {len(groups):,} customers in {len(windows)} window(s), "
         f"{time.perf_counter() - t0:.1f} s")
    return ranker, {"windows": report, "rows": int(len(labels)), "groups": int(len(groups)),
                    "fit_seconds": round(time.perf_counter() - t0, 2), "importance": ranker.importance()}


def _window_part(purchases: Interactions, window: LabelWindow, meta: ArticleMeta, sizes: dict[str, int],
                 gnn_as_of: Callable[[Interactions, dt.date], GNNScores] | None, max_customers: int,
                 seed: int, gnn_recent_days: int) -> tuple[tuple[np.ndarray, np.ndarray, np.ndarray], dict[str, Any], list[str]]:
    """One label window's ranker rows (features, labels, group sizes), its report entry and the feature names."""
    t0 = time.perf_counter()
    # the purchases up to the window feed the message pass only (the snapshot cuts its own copy): not kept alive
    gnn = gnn_as_of(purchases.until(window.as_of), window.as_of) if gnn_as_of is not None else None
    pairs, labels, snapshot, stats = window_rows(purchases, window, meta, sizes, gnn, max_customers, seed,
                                                 gnn_recent_days)
    has_positive = np.bincount(pairs.customer, weights=labels, minlength=purchases.n_customers) > 0
    keep = has_positive[pairs.customer]
    kept = pairs.subset(keep)
    groups = np.diff(np.r_[run_starts(kept.customer), len(kept.customer)])  # rows per customer
    x = feature_matrix(snapshot, kept)
    report = {**asdict(window), "as_of": window.as_of.isoformat(), "end": window.end.isoformat(), **stats,
              "trained_customers": int(len(groups)), "seconds": round(time.perf_counter() - t0, 2)}
    info(f"ranker: window {window.as_of + dt.timedelta(days=1)}..{window.end}: {stats['customers']:,} customers, "
         f"{stats['pairs']:,} candidate pairs, candidate recall {stats['recall']['all']:.3f}")
    return (x, labels[keep], groups), report, feature_names(snapshot)


REST_MIXES = tuple(round(m / 10, 1) for m in range(11))


def choose_rest_mix(purchases: Interactions, window: LabelWindow, meta: ArticleMeta, rc: RankerConfig,
                    gnn_as_of: Callable[[Interactions, dt.date], GNNScores], pairs: pl.DataFrame,
                    seed: int) -> tuple[float, dict[str, Any]]:
    """The mix of `non_candidate_score` with the best AUC on the window's 1:1 pairs (customer_index,
    article_index, label), features as of the day before it: a candidate scores above every other article
    whatever the mix, so only the order of the non-candidates moves. Customers without a history get the
    cold-start fallback, so their pairs are left out; beyond `ranker.max_customers` customers, a seeded sample
    of them. Ties go to the mix nearest 0.5."""
    # the message pass first, as for a label window: its graph is freed before the snapshot is built
    gnn = gnn_as_of(purchases.until(window.as_of), window.as_of)
    snapshot = Snapshot(purchases, window.as_of, meta)
    c = pairs["customer_index"].to_numpy().astype(np.int64)
    a = pairs["article_index"].to_numpy().astype(np.int64)
    y = pairs["label"].to_numpy()
    keep = snapshot.purchases[c] > 0
    warm = np.unique(c[keep])
    if len(warm) > rc.max_customers:
        keep &= np.isin(c, np.random.default_rng(seed).choice(warm, rc.max_customers, replace=False))
    c, a, y = c[keep], a[keep], y[keep]
    if len(np.unique(y)) < 2:
        return 0.5, {"skipped": "the window's pairs hold one label only"}
    customers = np.unique(c)
    sizes = rc.sizes()
    walk = RandomWalk(snapshot) if sizes.get("walk", 0) > 0 else None
    cand = candidate_pairs(snapshot, customers, sizes, gnn=gnn, walk=walk, gnn_recent_days=rc.gnn_recent_days)
    n = snapshot.n_articles
    is_candidate = np.isin(c * n + a, cand.customer * n + cand.article)
    _, z = gnn.pairs(customers, np.searchsorted(customers, c), a)
    trend, z = torch.from_numpy(trend_percentile(snapshot)[a]), torch.from_numpy(z)
    aucs = {mix: float(roc_auc_score(y, np.where(is_candidate, 2.0, non_candidate_score(trend, z, mix).numpy())))
            for mix in REST_MIXES}
    best = max(REST_MIXES, key=lambda m: (aucs[m], -abs(m - 0.5)))
    info(f"ranker: non-candidates scored with {best:.1f} x recent sales + {1 - best:.1f} x the GNN's percentile "
         f"(validation AUC {aucs[best]:.4f}; 0.5/0.5: {aucs[0.5]:.4f})")
    return best, {"rest_mix": best, "pairs": int(len(y)), "candidate_share": float(is_candidate.mean()),
                  "auc_by_mix": {f"{m:.1f}": round(v, 5) for m, v in aucs.items()}}

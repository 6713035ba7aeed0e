"""Fitting the ranker: label windows, their (customer, candidate) rows and labels, and the LightGBM fit.

Each label window's features are computed as of the day before it (no leakage), with the GNN's message passing
over the purchases up to that day; `hmgnn train` stops the GNN's own training before the earliest window, so a
window's purchases were never the GNN's targets either.
"""

from __future__ import annotations

import datetime as dt
import time
from dataclasses import asdict, dataclass
from typing import Any, Callable

import numpy as np
import polars as pl
import torch
from sklearn.metrics import roc_auc_score

from hmgnn.config import RankerConfig
from hmgnn.console import info, progress
from hmgnn.interactions import Interactions, LabelWindow, WindowTruth
from hmgnn.metrics import average_precision_curve, bootstrap_ratio
from hmgnn.models.base import MODELS, position_in_run, run_starts
from hmgnn.models.baselines import BASELINES
from hmgnn.ranking.candidates import (SOURCES, CandidatePairs, GNNScores, RandomWalk, candidate_pairs,
                                      non_candidate_score, trend_percentile)
from hmgnn.ranking.features import ArticleMeta, Snapshot
from hmgnn.ranking.pairs import GNN_FEATURES, RECENT_SIMILARITY, feature_matrix, feature_names
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
                gnn_recent_days: int = 0) -> tuple[CandidatePairs, np.ndarray, Snapshot, np.ndarray, dict[str, Any]]:
    """Candidates, features' snapshot and labels of one window's labelled customers (returned, sorted); and the
    candidates' recall."""
    snapshot = Snapshot(purchases, window.as_of, meta)
    customers = window.labelled(purchases)
    if len(customers) > max_customers:
        customers = np.sort(np.random.default_rng(seed).choice(customers, max_customers, replace=False))
    walk = RandomWalk.if_used(snapshot, sizes)
    pairs = candidate_pairs(snapshot, customers, sizes, gnn=gnn, walk=walk, gnn_recent_days=gnn_recent_days)
    inside = window.inside(purchases) & np.isin(purchases.customer_index, customers)
    n = purchases.n_articles
    truth = np.unique(purchases.customer_index[inside].astype(np.int64) * n + purchases.article_index[inside])
    labels = np.isin(pairs.customer * n + pairs.article, truth).astype(np.float32)
    recall = candidate_recall(pairs, truth, n)
    return pairs, labels, snapshot, customers, {"customers": int(len(customers)), "pairs": int(len(labels)),
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


@dataclass
class LabelRows:
    """One ranker's rows of the label windows, stacked: one per (customer, candidate) of the customers with a bought
    candidate (the others cannot teach an order), grouped by window then customer."""

    x: np.ndarray
    labels: np.ndarray
    customer: np.ndarray
    article: np.ndarray
    window: np.ndarray
    names: list[str]

    def _key(self) -> np.ndarray:
        return self.window.astype(np.int64) * (int(self.customer.max(initial=0)) + 1) + self.customer

    def groups(self, rows: np.ndarray) -> np.ndarray:
        """Row counts of the consecutive (window, customer) groups among the rows where `rows` is set."""
        key = self._key()[rows]
        return np.diff(np.r_[run_starts(key), len(key)]).astype(np.int64)


def holdout(labelled: np.ndarray, share: float, seed: int) -> np.ndarray:
    """A seeded `share` of a window's labelled customers (sorted), held out of the rankers' first fit: the trees
    stop where their order of these customers' candidates stops improving, and the models are compared on them."""
    n = int(round(share * len(labelled)))
    return np.sort(np.random.default_rng(seed).choice(labelled, n, replace=False)) if n else np.zeros(0, np.int64)


def capacity(customers: int) -> int:
    """Leaves per tree for a ranker that learns from `customers` labelled customers: few leaves on small data (a
    deep tree there fits the few customers' noise), up to 31 from about 800 customers."""
    return int(np.clip(2 ** np.floor(np.log2(max(customers, 1) / 25)), 4, 31))


def fit_ranker(purchases: Interactions, windows: list[LabelWindow], meta: ArticleMeta, rc: RankerConfig,
               gnn_as_of: Callable[[Interactions, dt.date], GNNScores] | None,
               seed: int) -> tuple[Ranker, Ranker | None, dict[str, Any]]:
    """Rows from every label window, then two LightGBM rankers: the `gnn`'s over every candidate and feature, and
    `ranker-only`'s, the same fit without the GNN (no GNN candidates, no GNN features), which measures what the GNN
    adds. Each is first fit with a share of the labelled customers held out (`ranker.holdout`), which chooses the
    trees (early stopping) and scores both rankers and the baselines on those customers (`validation` in the
    report); then fit again on every customer for that many trees. `gnn_as_of(purchases, day)`: the GNN's scores
    with message passing up to that day (None: no GNN, and no `ranker-only`)."""
    sizes = rc.sizes()
    reports: list[dict[str, Any]] = []
    parts: dict[str, list[tuple[np.ndarray, ...]]] = {}
    held: list[np.ndarray] = []
    names: list[str] = []
    with progress(transient=True, unit="label windows") as bar:
        task = bar.add_task("ranker: candidates and features per label window", total=len(windows))
        for i, window in enumerate(windows):
            found, customers, report, names = _window_part(purchases, window, meta, sizes, gnn_as_of,
                                                           rc.max_customers, seed + i, rc.gnn_recent_days)
            held.append(holdout(customers, rc.holdout, seed + 1000 + i))
            for name, part in found.items():
                parts.setdefault(name, []).append((*part, np.full(len(part[1]), i, np.int16)))
            reports.append(report | {"trained_customers": int(len(np.unique(found["gnn"][2]))),
                                     "held_out_customers": int(len(held[-1]))})
            bar.advance(task)
    t0 = time.perf_counter()
    similarity_off = () if rc.recent_similarity else RECENT_SIMILARITY
    columns = {"gnn": np.array([n not in similarity_off for n in names]),
               "ranker-only": np.array([n not in GNN_FEATURES for n in names])}
    fits: dict[str, Any] = {}
    for name, stacked in parts.items():
        rows = LabelRows(np.vstack([p[0] for p in stacked]), *(np.concatenate([p[j] for p in stacked]) for j in range(1, 5)),
                         names=names)
        stacked.clear()
        if not len(rows.labels) or rows.labels.min() == rows.labels.max():
            raise ValueError("no customer of the ranker's label windows bought one of their candidates")
        is_held = np.zeros(len(rows.labels), bool)
        for i, h in enumerate(held):
            at = rows.window == i
            is_held[at] = np.isin(rows.customer[at], h)
        fits[name] = _fit_one(rows, columns[name], is_held, rc, seed, name)
    ranker, ranker_only = fits["gnn"]["ranker"], fits.get("ranker-only", {}).get("ranker")
    validation = _validation(held, fits, purchases, windows)
    seconds = round(time.perf_counter() - t0, 2)
    info(f"ranker: {rc.objective}, {ranker.trees} trees of {fits['gnn']['leaves']} leaves, on "
         f"{fits['gnn']['rows']:,} rows of {fits['gnn']['groups']:,} customers in {len(windows)} window(s), {seconds:.1f} s")
    report = {"windows": reports, "rows": fits["gnn"]["rows"],
              "groups": fits["gnn"]["groups"], "fit_seconds": seconds, "importance": ranker.importance(),
              "trees": ranker.trees, "leaves": fits["gnn"]["leaves"], "validation": validation}
    if ranker_only is not None:
        report["ranker_only"] = {"trees": ranker_only.trees, "leaves": fits["ranker-only"]["leaves"],
                                 "rows": fits["ranker-only"]["rows"]}
    return ranker, ranker_only, report


def _fit_one(rows: LabelRows, keep_cols: np.ndarray, is_held: np.ndarray, rc: RankerConfig, seed: int,
             name: str) -> dict[str, Any]:
    """One ranker over `rows` x `keep_cols`: early-stopped with the held-out customers, its scores of their rows,
    then refit on every customer for the trees early stopping chose."""
    names = [n for n, k in zip(rows.names, keep_cols) if k]
    train, valid = ~is_held, is_held
    groups = rows.groups(np.ones(len(rows.labels), bool))
    leaves = rc.leaves or capacity(len(groups))
    held_scores = None
    trees = rc.trees
    settings = dict(objective=rc.objective, learning_rate=rc.learning_rate, leaves=leaves, seed=seed)
    if valid.any() and train.any() and rows.labels[train].max() > rows.labels[train].min():
        with progress(transient=True, unit="trees") as bar:
            task = bar.add_task(f"ranker ({name}): early stopping on held-out customers", total=rc.trees)
            first = Ranker.fit(rows.x[np.ix_(train, keep_cols)], rows.labels[train], rows.groups(train), names,
                               trees=rc.trees, on_tree=lambda: bar.advance(task),
                               valid=(rows.x[np.ix_(valid, keep_cols)], rows.labels[valid], rows.groups(valid)),
                               patience=rc.patience, **settings)
        trees = first.trees
        held_scores = (valid, first.predict(rows.x[np.ix_(valid, keep_cols)]))
    with progress(transient=True, unit="trees") as bar:
        task = bar.add_task(f"ranker ({name}): {rc.objective}, {trees} trees on {len(rows.labels):,} rows", total=trees)
        ranker = Ranker.fit(rows.x[:, keep_cols], rows.labels, groups, names,
                            trees=trees, on_tree=lambda: bar.advance(task), **settings)
    return {"ranker": ranker, "leaves": leaves, "held_scores": held_scores, "rows": int(len(rows.labels)),
            "groups": int(len(groups)), "label_rows": rows}


def _validation(held: list[np.ndarray], fits: dict[str, Any], purchases: Interactions,
                windows: list[LabelWindow], k: int = 12) -> dict[str, Any]:
    """MAP@k of the held-out customers (every label window's, pooled) for each ranker (its candidates in its
    order, fit without them) and each baseline (fit on the purchases up to their window): the model that
    ranks them best is the one `recommend.model = auto` answers with."""
    if not sum(len(h) for h in held) or any(f["held_scores"] is None for f in fits.values()):
        # too few customers to hold any out, or none of them bought a candidate: nothing to compare
        return {"customers": 0, "skipped": "no held-out customers (ranker.holdout = 0, or too few labelled)"}
    ap: dict[str, list[np.ndarray]] = {name: [] for name in (*fits, *BASELINES)}
    for i, window in enumerate(windows):
        if not len(held[i]):
            continue
        inside = purchases.subset(window.inside(purchases))
        among = np.zeros(purchases.n_customers, bool)
        among[held[i]] = True
        truth = WindowTruth.of(inside, among=among)
        for name, fit in fits.items():
            rows = fit["label_rows"]
            mask, scores = fit["held_scores"]
            at = rows.window[mask] == i
            top = _top_of(truth.customers, rows, np.flatnonzero(mask)[at], scores[at], k)
            ap[name].append(_ap(truth, top, k))
        seen = purchases.until(window.as_of)
        for name in BASELINES:
            model = MODELS[name]().fit(seen, window.as_of)  # the baselines register on import
            top, _ = model.recommend(truth.customers, k=k)
            ap[name].append(_ap(truth, np.atleast_2d(top), k))
    means = {name: float(np.concatenate(v).mean()) for name, v in ap.items()}
    best = max(BASELINES, key=lambda n: means[n])
    low, high = bootstrap_ratio(np.concatenate(ap["gnn"]), np.concatenate(ap[best]))
    out = {"customers": int(sum(len(h) for h in held)), f"map@{k}": {n: round(v, 6) for n, v in means.items()},
           "best_baseline": best, "gnn_vs_best_baseline": round(means["gnn"] / max(means[best], 1e-12), 4),
           "gnn_vs_best_baseline_ci95": [round(low, 4), round(high, 4)],
           "auto": auto_choice(means)}
    if "ranker-only" in means:
        low, high = bootstrap_ratio(np.concatenate(ap["gnn"]), np.concatenate(ap["ranker-only"]))
        out["gnn_vs_ranker_only"] = round(means["gnn"] / max(means["ranker-only"], 1e-12), 4)
        out["gnn_vs_ranker_only_ci95"] = [round(low, 4), round(high, 4)]
    return out


def auto_choice(maps: dict[str, float]) -> str:
    """The model `recommend.model = auto` answers with, from the held-out customers' MAP@12 of each: the `gnn`,
    unless a baseline ranked them better (the best such baseline; ties keep the gnn)."""
    best = max(BASELINES, key=lambda n: (maps[n], -BASELINES.index(n)))
    return "gnn" if maps["gnn"] >= maps[best] else best


def _top_of(customers: np.ndarray, rows: LabelRows, row_index: np.ndarray, scores: np.ndarray, k: int) -> np.ndarray:
    """[len(customers), k] articles of each customer's k best-scored rows among `rows[row_index]` (scored `scores`;
    -1 where fewer)."""
    customer, article = rows.customer[row_index], rows.article[row_index]
    order = np.lexsort((article, -scores, customer))
    c, a = customer[order], article[order]
    slot = position_in_run(c)
    top = np.full((len(customers), k), -1, np.int64)
    keep = slot < k
    top[np.searchsorted(customers, c[keep]), slot[keep]] = a[keep]
    return top


def _ap(truth: WindowTruth, top: np.ndarray, k: int) -> np.ndarray:
    """AP@k of each of the truth's customers (each bought something in the window)."""
    hits, n_relevant = truth.hits(top)
    return average_precision_curve(hits[:, :k], n_relevant)[:, -1]


def _window_part(purchases: Interactions, window: LabelWindow, meta: ArticleMeta, sizes: dict[str, int],
                 gnn_as_of: Callable[[Interactions, dt.date], GNNScores] | None, max_customers: int, seed: int,
                 gnn_recent_days: int) -> tuple[dict[str, tuple[np.ndarray, ...]], np.ndarray, dict[str, Any], list[str]]:
    """One label window's ranker rows for each fit, `gnn` (every candidate) and, with a GNN, `ranker-only` (the
    candidates of the other sources, their features computed among themselves as `ranker-only` computes them when it
    recommends): features, labels, customer and article of each row of the customers with a bought candidate. Then its labelled customers, its report entry and the feature names."""
    t0 = time.perf_counter()
    # the purchases up to the window feed the message pass only (the snapshot cuts its own copy): not kept alive
    gnn = gnn_as_of(purchases.until(window.as_of), window.as_of) if gnn_as_of is not None else None
    pairs, labels, snapshot, customers, stats = window_rows(purchases, window, meta, sizes, gnn, max_customers, seed,
                                                            gnn_recent_days)
    found = {"gnn": _rows_of(snapshot, pairs, labels, purchases.n_customers)}
    if gnn is not None:
        others = pairs.sources != 1  # proposed by another source than the GNN (too)
        found["ranker-only"] = _rows_of(snapshot, pairs.subset(others), labels[others], purchases.n_customers)
    report = {**asdict(window), "as_of": window.as_of.isoformat(), "end": window.end.isoformat(), **stats,
              "seconds": round(time.perf_counter() - t0, 2)}
    info(f"ranker: window {window.as_of + dt.timedelta(days=1)}..{window.end}: {stats['customers']:,} customers, "
         f"{stats['pairs']:,} candidate pairs, candidate recall {stats['recall']['all']:.3f}")
    return found, customers, report, feature_names(snapshot)


def _rows_of(snapshot: Snapshot, pairs: CandidatePairs, labels: np.ndarray, n_customers: int) -> tuple[np.ndarray, ...]:
    """The rows of the customers with a bought candidate among `pairs` (the others cannot teach an order): features,
    labels, customer, article."""
    has_positive = np.bincount(pairs.customer, weights=labels, minlength=n_customers) > 0
    keep = has_positive[pairs.customer]
    pairs, labels = pairs.subset(keep), labels[keep]
    return feature_matrix(snapshot, pairs), labels, pairs.customer, pairs.article


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
    walk = RandomWalk.if_used(snapshot, sizes)
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

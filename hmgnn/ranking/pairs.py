"""The ranker's input rows: one per (customer, candidate) pair, the pair features beside the candidate sources'
flags and the GNN's and the random walk's scores with their rank among the customer's candidates."""

from __future__ import annotations

import numpy as np

from hmgnn.models.base import position_in_run
from hmgnn.ranking.candidates import SOURCES, CandidatePairs
from hmgnn.ranking.features import Snapshot

SCORE_FEATURES = ["gnn_score", "gnn_zscore", "gnn_rank", "walk_score", "walk_rank", "gnn_recent_max", "gnn_recent_mean"]
RECENT_SIMILARITY = ("gnn_recent_max", "gnn_recent_mean")
"""The GNN's similarity of a candidate to the customer's recent purchases (`ranker.recent_similarity`)."""
GNN_FEATURES = ("from_gnn", "gnn_score", "gnn_zscore", "gnn_rank", "gnn_recent_max", "gnn_recent_mean")
"""The features that come from the GNN: `ranker-only` is the ranker fit without them (and without the GNN's
candidates), which measures what the GNN adds."""


def feature_names(snapshot: Snapshot) -> list[str]:
    return [f"from_{s}" for s in SOURCES] + SCORE_FEATURES + snapshot.feature_names


def rank_within(customers: np.ndarray, values: np.ndarray) -> np.ndarray:
    """1-based rank of each value among the rows of the same customer (largest first); a NaN value (the score's
    source is off) has a NaN rank, not a rank that would follow the rows' order. `customers` must be grouped (equal
    values contiguous)."""
    missing = np.isnan(values)
    order = np.lexsort((-np.where(missing, -np.inf, values), customers))
    out = np.empty(len(customers), np.float32)
    out[order] = position_in_run(customers[order]) + 1
    out[missing] = np.nan
    return out


def feature_matrix(snapshot: Snapshot, pairs: CandidatePairs, chunk: int = 1 << 19) -> np.ndarray:
    """float32 [n_pairs, len(feature_names(snapshot))] in `feature_names` order, filled `chunk` pairs at a time (the
    pair features' float64 intermediates stay small however many pairs there are)."""
    n, flags = len(pairs.customer), len(SOURCES)
    out = np.empty((n, flags + len(SCORE_FEATURES) + len(snapshot.feature_names)), np.float32)
    scores = [pairs.gnn_score, pairs.gnn_zscore, rank_within(pairs.customer, pairs.gnn_score),
              pairs.walk_score, rank_within(pairs.customer, pairs.walk_score), pairs.gnn_recent_max,
              pairs.gnn_recent_mean]
    for i, column in enumerate(scores):
        out[:, flags + i] = column
    for s in range(0, n, chunk):
        e = min(s + chunk, n)
        out[s:e, :flags] = (pairs.sources[s:e, None] >> np.arange(flags)) & 1
        snapshot.matrix(pairs.customer[s:e], pairs.article[s:e], out=out[s:e, flags + len(scores):])
    return out

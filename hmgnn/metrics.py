"""Ranking metrics as the Kaggle competition scored them (MAP@12 over customers who bought) and the reference
project's binary metrics on fixed (customer, article) pairs; plain numpy plus scikit-learn."""

from __future__ import annotations

import numpy as np


def hits_matrix(recommended: np.ndarray, customers: np.ndarray, bought_customers: np.ndarray,
                bought_articles: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Which recommendations were bought, and how many distinct articles each customer bought.

    Args:
        recommended: [n, K] article indices per customer, best first (-1 = empty slot).
        customers: [n] the customer of each row.
        bought_customers, bought_articles: the purchases in the window (repeats count once).

    Returns:
        (hits bool [n, K], n_relevant int [n]); an article recommended twice is a hit at its first rank only.
    """
    recommended = np.asarray(recommended, np.int64)
    customers = np.asarray(customers, np.int64)
    n_art = int(max(recommended.max(initial=0), np.max(bought_articles, initial=0))) + 1
    truth = np.unique(np.asarray(bought_customers, np.int64) * n_art + np.asarray(bought_articles, np.int64))
    hits = np.isin(customers[:, None] * n_art + recommended, truth) & (recommended >= 0)
    if recommended.shape[1] > 1:  # Kaggle's apk counts a repeated prediction once
        order = np.argsort(recommended, axis=1, kind="stable")
        srt = np.take_along_axis(recommended, order, 1)
        repeat = np.zeros_like(hits)
        np.put_along_axis(repeat, order[:, 1:], srt[:, 1:] == srt[:, :-1], 1)
        hits &= ~repeat
    truth_customer = truth // n_art
    n_relevant = np.searchsorted(truth_customer, customers, "right") - np.searchsorted(truth_customer, customers)
    return hits, n_relevant


def map_at_k_curve(hits: np.ndarray, n_relevant: np.ndarray) -> np.ndarray:
    """MAP@K for K = 1..hits.shape[1]: AP@K = sum of precision@i at hits i <= K / min(#relevant, K).

    Customers without a relevant article are left out (as Kaggle scored only customers who bought).
    """
    keep = n_relevant > 0
    if not keep.any():
        return np.zeros(hits.shape[1])
    return average_precision_curve(hits[keep], n_relevant[keep]).mean(0)


def average_precision_curve(hits: np.ndarray, n_relevant: np.ndarray) -> np.ndarray:
    """[n_customers, K] AP@K of each customer for K = 1..hits.shape[1] (each needs a relevant article)."""
    hits = hits.astype(np.float64)
    ranks = np.arange(1, hits.shape[1] + 1)
    precision_at_hits = np.cumsum(hits, axis=1) / ranks * hits
    return np.cumsum(precision_at_hits, axis=1) / np.minimum(n_relevant[:, None], ranks[None, :])


def recall_at_k_curve(hits: np.ndarray, n_relevant: np.ndarray) -> np.ndarray:
    """Recall@K for K = 1..hits.shape[1]: share of a customer's distinct bought articles in the top K, averaged."""
    keep = n_relevant > 0
    if not keep.any():
        return np.zeros(hits.shape[1])
    return (np.cumsum(hits[keep], axis=1) / n_relevant[keep, None]).mean(0)


def ranking_metrics(recommended: np.ndarray, hits: np.ndarray, n_relevant: np.ndarray, k: int,
                    n_articles: int) -> dict[str, float]:
    """MAP, recall, hit rate, NDCG and precision at k over customers who bought, and catalogue coverage.

    Coverage@k is the share of all articles that appear in anybody's top k.
    """
    keep = n_relevant > 0
    h, n_rel = hits[keep, :k].astype(np.float64), n_relevant[keep]
    ranks = np.arange(1, h.shape[1] + 1)
    discount = 1.0 / np.log2(ranks + 1)
    ideal = np.cumsum(discount)[np.minimum(n_rel, h.shape[1]) - 1] if len(h) else np.zeros(0)
    shown = np.unique(recommended[:, :k])
    mean = (lambda x: float(np.mean(x)) if len(x) else 0.0)
    return {
        f"map@{k}": float(map_at_k_curve(hits[:, :k], n_relevant)[-1]),
        f"recall@{k}": mean(h.sum(1) / n_rel),
        f"hit@{k}": mean(h.any(1)),
        f"ndcg@{k}": mean((h * discount).sum(1) / ideal),
        f"precision@{k}": mean(h.sum(1) / k),
        f"coverage@{k}": float((shown >= 0).sum() / n_articles),
    }


def to_probability(scores: np.ndarray, kind: str) -> np.ndarray:
    """Map model scores to (0, 1) for the threshold metrics.

    'logit': sigmoid; 'probability': as is; 'rank': the score's rank among the pairs, (rank - 0.5) / n with
    ties at their average rank, so the 0.5 threshold splits the pairs at the median score.
    """
    from scipy.stats import rankdata  # imported here: slow to import, needed only by evaluate

    scores = np.asarray(scores, np.float64)
    if kind == "logit":
        return 1.0 / (1.0 + np.exp(-np.clip(scores, -50, 50)))
    if kind == "probability":
        return np.clip(scores, 0.0, 1.0)
    if kind == "rank":
        if not len(scores):
            return scores
        return (rankdata(scores, method="average") - 0.5) / len(scores)
    raise ValueError(f"unknown score kind {kind!r} (logit, probability or rank)")


def best_f1_threshold(labels: np.ndarray, probabilities: np.ndarray) -> float:
    """The threshold on `probabilities` (predict bought where >= it) with the largest F1 on these pairs; among
    equal F1s the highest (fewest positives predicted). 0.5 where the pairs hold no positive."""
    labels = np.asarray(labels).astype(bool)
    p = np.asarray(probabilities, np.float64)
    if not labels.any():
        return 0.5
    order = np.argsort(-p, kind="stable")
    p, labels = p[order], labels[order]
    last = np.r_[p[1:] != p[:-1], True]  # each distinct value's last pair: the cut "predict >= that value"
    tp = np.cumsum(labels)[last]
    predicted = (np.arange(len(p)) + 1)[last]
    f1 = 2 * tp / (predicted + labels.sum())
    return float(p[last][int(np.argmax(f1))])  # argmax: the first (highest threshold) among the best


def binary_metrics(labels: np.ndarray, probabilities: np.ndarray, threshold: float = 0.5) -> dict[str, float]:
    """ROC-AUC, average precision, accuracy and F1 (at `threshold`) of bought-or-not predictions."""
    from sklearn.metrics import accuracy_score, average_precision_score, f1_score, roc_auc_score

    labels = np.asarray(labels).astype(np.int8)
    predicted = (np.asarray(probabilities) >= threshold).astype(np.int8)
    both = len(np.unique(labels)) == 2  # AUC and AP need both classes
    return {
        "auc": float(roc_auc_score(labels, probabilities)) if both else float("nan"),
        "ap": float(average_precision_score(labels, probabilities)) if both else float("nan"),
        "accuracy": float(accuracy_score(labels, predicted)),
        "f1": float(f1_score(labels, predicted, zero_division=0.0)),
    }


def bootstrap_interval(values: np.ndarray, level: float = 0.95, rounds: int = 1000, seed: int = 0) -> tuple[float, float]:
    """Percentile bootstrap interval of the mean of `values` (customers resampled with replacement, seeded)."""
    values = np.asarray(values, np.float64)
    if len(values) == 0:
        return float("nan"), float("nan")
    rng = np.random.default_rng(seed)
    means = np.empty(rounds)
    for r in range(rounds):  # one round at a time: memory stays at one resample
        means[r] = values[rng.integers(0, len(values), len(values))].mean()
    tail = (1 - level) / 2
    return float(np.quantile(means, tail)), float(np.quantile(means, 1 - tail))


def bootstrap_ratio(values: np.ndarray, baseline: np.ndarray, level: float = 0.95, rounds: int = 1000,
                    seed: int = 0) -> tuple[float, float]:
    """Percentile bootstrap interval of mean(values) / mean(baseline) over the same customers (paired: each round
    resamples customers, both models' values of a customer together), as two models on one window compare."""
    values, baseline = np.asarray(values, np.float64), np.asarray(baseline, np.float64)
    if len(values) != len(baseline):
        raise ValueError(f"paired values must have one length, got {len(values)} and {len(baseline)}")
    if len(values) == 0:
        return float("nan"), float("nan")
    rng = np.random.default_rng(seed)
    ratios = np.empty(rounds)
    for r in range(rounds):
        pick = rng.integers(0, len(values), len(values))
        ratios[r] = values[pick].mean() / max(baseline[pick].mean(), 1e-12)
    tail = (1 - level) / 2
    return float(np.quantile(ratios, tail)), float(np.quantile(ratios, 1 - tail))


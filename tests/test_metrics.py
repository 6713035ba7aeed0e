"""The metric code against hand-computed cases: Kaggle's MAP@12 (repeats, duplicates, short lists), the other
ranking metrics, and the binary metrics with ties."""

import numpy as np
import pytest

from hmgnn.metrics import (best_f1_threshold, binary_metrics, hits_matrix, map_at_k_curve, ranking_metrics, recall_at_k_curve,
                           to_probability)


def kaggle_apk(actual, predicted, k=12):
    """The competition's reference apk (benhamner/Metrics), kept verbatim in spirit as the oracle."""
    predicted = predicted[:k]
    score, num_hits = 0.0, 0.0
    for i, p in enumerate(predicted):
        if p in actual and p not in predicted[:i]:
            num_hits += 1.0
            score += num_hits / (i + 1.0)
    return score / min(len(actual), k) if actual else 0.0


def _metrics(recommended, bought, k=12, n_articles=100):
    customers = np.arange(len(recommended))
    bc = np.array([c for c, arts in enumerate(bought) for _ in arts], np.int64)
    ba = np.array([a for arts in bought for a in arts], np.int64)
    hits, n_rel = hits_matrix(np.array(recommended), customers, bc, ba)
    return hits, n_rel, ranking_metrics(np.array(recommended), hits, n_rel, k, n_articles)


def test_map_hand_computed():
    # customer 0: hits at ranks 1 and 3 of 2 bought -> (1/1 + 2/3) / 2
    # customer 1: bought 3 articles (one of them twice), hit at rank 2 -> (1/2) / 3
    # customer 2: no hit -> 0
    recs = [[1, 2, 3, 4], [5, 6, 7, 8], [9, 10, 11, 12]]
    bought = [[1, 3], [6, 6, 50, 51], [13]]
    hits, n_rel, m = _metrics(recs, bought, k=4)
    assert n_rel.tolist() == [2, 3, 1]  # a repeated purchase counts once
    expected = ((1 + 2 / 3) / 2 + (1 / 2) / 3 + 0) / 3
    assert m["map@4"] == pytest.approx(expected)
    assert m["map@4"] == pytest.approx(np.mean([kaggle_apk(set(b), r, 4) for r, b in zip(recs, bought)]))
    assert m["recall@4"] == pytest.approx((2 / 2 + 1 / 3 + 0) / 3)
    assert m["hit@4"] == pytest.approx(2 / 3)
    assert m["precision@4"] == pytest.approx((2 / 4 + 1 / 4 + 0) / 3)
    dcg0 = 1 + 1 / np.log2(4)
    idcg0 = 1 + 1 / np.log2(3)
    dcg1 = 1 / np.log2(3)
    idcg1 = 1 + 1 / np.log2(3) + 1 / np.log2(4)
    assert m["ndcg@4"] == pytest.approx((dcg0 / idcg0 + dcg1 / idcg1 + 0) / 3)
    assert m["coverage@4"] == pytest.approx(12 / 100)


def test_denominator_is_min_of_bought_and_k():
    # 15 distinct bought, 12 slots all hits -> AP@12 = 1 (denominator min(15, 12))
    recs = [list(range(12))]
    hits, n_rel, m = _metrics(recs, [list(range(15))])
    assert m["map@12"] == pytest.approx(1.0)
    assert m["recall@12"] == pytest.approx(12 / 15)


def test_duplicate_prediction_counts_once_and_empty_slots_never_hit():
    recs = [[7, 7, 3, -1]]
    hits, n_rel, m = _metrics(recs, [[7, 3]], k=4)
    assert hits.tolist() == [[True, False, True, False]]
    assert m["map@4"] == pytest.approx((1 + 2 / 3) / 2)
    assert m["map@4"] == pytest.approx(kaggle_apk({7, 3}, [7, 7, 3, -1], 4))


def test_customers_without_purchases_are_left_out():
    recs = np.array([[1, 2], [1, 2]])
    hits, n_rel = hits_matrix(recs, np.array([0, 1]), np.array([0]), np.array([2]))
    assert n_rel.tolist() == [1, 0]
    assert map_at_k_curve(hits, n_rel).tolist() == pytest.approx([0.0, 0.5])  # only customer 0 counts


def test_curves_match_the_point_metrics_and_kaggle_apk():
    rng = np.random.default_rng(0)
    recs = np.stack([rng.permutation(40)[:20] for _ in range(30)])
    bought = [list(rng.integers(0, 40, rng.integers(1, 8))) for _ in range(30)]
    hits, n_rel, _ = _metrics(recs, bought, k=20, n_articles=40)
    curve_map, curve_recall = map_at_k_curve(hits, n_rel), recall_at_k_curve(hits, n_rel)
    assert np.all(np.diff(curve_recall) >= -1e-12)  # recall never falls with K
    for k in (1, 5, 12, 20):
        m = ranking_metrics(recs, hits, n_rel, k, 40)
        assert curve_map[k - 1] == pytest.approx(m[f"map@{k}"])
        assert curve_recall[k - 1] == pytest.approx(m[f"recall@{k}"])
        oracle = np.mean([kaggle_apk(set(b), list(r), k) for r, b in zip(recs, bought)])
        assert m[f"map@{k}"] == pytest.approx(oracle)


def test_binary_metrics_with_ties():
    labels = np.array([1, 1, 0, 0])
    scores = np.array([0.9, 0.5, 0.5, 0.1])  # one positive ties with one negative: AUC = (1 + 1 + 0.5 + 1) / 4
    m = binary_metrics(labels, scores)
    assert m["auc"] == pytest.approx(0.875)
    assert m["accuracy"] == pytest.approx(3 / 4)  # 0.5 counts as positive
    assert m["f1"] == pytest.approx(2 * (2 / 3) * 1 / (2 / 3 + 1))
    assert m["ap"] == pytest.approx(1 * 0.5 + (2 / 3) * 0.5)  # sklearn's step-wise AP


def test_best_f1_threshold_is_the_cut_with_the_largest_f1():
    from sklearn.metrics import f1_score

    labels = np.array([1, 1, 0, 1, 0, 0, 1, 0])
    p = np.array([0.9, 0.8, 0.8, 0.6, 0.5, 0.4, 0.3, 0.1])
    # cuts: >=0.9 F1 0.4, >=0.8 (a tie: both pairs) 0.571, >=0.6 0.75, >=0.5 0.667, >=0.4 0.6, >=0.3 0.727, >=0.1 0.667
    assert best_f1_threshold(labels, p) == 0.6
    rng = np.random.default_rng(0)
    for _ in range(50):
        y, q = rng.integers(0, 2, 40), np.round(rng.random(40), 1)
        best = max(f1_score(y, q >= u) for u in np.unique(q))
        assert f1_score(y, q >= best_f1_threshold(y, q)) == pytest.approx(best)
    assert best_f1_threshold(np.zeros(3), np.array([0.2, 0.4, 0.6])) == 0.5  # no positive: nothing to choose


def test_binary_metrics_one_class_gives_nan_auc():
    m = binary_metrics(np.array([1, 1]), np.array([0.7, 0.2]))
    assert np.isnan(m["auc"]) and np.isnan(m["ap"]) and m["accuracy"] == 0.5


def test_rank_normalisation_averages_ties_and_keeps_order():
    p = to_probability(np.array([3.0, -np.inf, 3.0, 10.0]), "rank")
    assert p.tolist() == pytest.approx([(2.5 - 0.5) / 4, 0.5 / 4, (2.5 - 0.5) / 4, 3.5 / 4])
    assert np.all((p > 0) & (p < 1))
    assert to_probability(np.array([0.0]), "logit").tolist() == [0.5]
    with pytest.raises(ValueError):
        to_probability(np.array([1.0]), "odds")


def test_bootstrap_interval_holds_the_mean_and_narrows_with_more_customers():
    from hmgnn.metrics import bootstrap_interval

    rng = np.random.default_rng(0)
    small, large = rng.random(50), rng.random(5000)
    for values in (small, large):
        low, high = bootstrap_interval(values)
        assert low < values.mean() < high
    assert np.diff(bootstrap_interval(large)) < np.diff(bootstrap_interval(small)) / 5
    assert bootstrap_interval(small) == bootstrap_interval(small)  # seeded
    assert np.isnan(bootstrap_interval(np.array([]))[0])



def test_bootstrap_ratio_is_paired_and_brackets_the_ratio():
    from hmgnn.metrics import bootstrap_ratio

    rng = np.random.default_rng(0)
    a = rng.random(500)
    assert bootstrap_ratio(a, a) == (1.0, 1.0)  # the same customers resampled together: no spread at all
    low, high = bootstrap_ratio(a * 1.1, a)
    assert low == pytest.approx(1.1) and high == pytest.approx(1.1)
    b = rng.random(500)
    low, high = bootstrap_ratio(a, b)
    assert low < a.mean() / b.mean() < high
    with pytest.raises(ValueError, match="one length"):
        bootstrap_ratio(a, b[:10])

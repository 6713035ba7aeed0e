"""The GNN's pair head (hmgnn/pair_head.py): its inputs by hand, its z-scores against the dense blend's, its fit."""

from __future__ import annotations

import datetime as dt

import numpy as np
import torch

from hmgnn import pair_head
from hmgnn.models.base import Interactions
from hmgnn.train import embedding_moments, zscore

AS_OF = dt.date(2020, 9, 22)


def _interactions() -> Interactions:
    # (customer, article, days before AS_OF)
    rows = [(0, 0, 0), (0, 0, 14), (0, 1, 30), (1, 2, 3), (1, 0, 100), (2, 3, 5)]
    c, a, d = (np.array(x) for x in zip(*rows))
    return Interactions(c.astype(np.int32), a.astype(np.int32), np.datetime64(AS_OF, "D") - d, 4, 5)


def test_pair_features_by_hand():
    products = np.array([0, 0, 1, 2, 2])  # articles 0 and 1 are colours of one product
    f = pair_head.PairFeatures(_interactions(), AS_OF, products)
    x = f.matrix(np.array([0.5, -1.0, 2.0]), np.array([0, 0, 3]), np.array([0, 1, 4]))
    col = {name: i for i, name in enumerate(pair_head.FEATURES)}
    assert x.shape == (3, len(pair_head.FEATURES))
    np.testing.assert_allclose(x[:, col["gnn_zscore"]], [0.5, -1.0, 2.0])
    # article 0: sold today (1 in the last day), 2 in 7 and 28 days (today + 14 days ago... 14 is outside 7)
    np.testing.assert_allclose(x[0, col["log_sales_1d"]], np.log1p(1))
    np.testing.assert_allclose(x[0, col["log_sales_7d"]], np.log1p(1))
    np.testing.assert_allclose(x[0, col["log_sales_28d"]], np.log1p(2))
    np.testing.assert_allclose(x[0, col["log_sales_all"]], np.log1p(3))
    # customer 0 bought article 0 today and 14 days ago: repurchase 1 + 0.5, twice
    np.testing.assert_allclose(x[0, col["repurchase_14d"]], 1.5)
    np.testing.assert_allclose(x[0, col["log_times_bought"]], np.log1p(2))
    # article 1: bought once by customer 0 (30 days ago); its product (0) bought 3 times by customer 0
    np.testing.assert_allclose(x[1, col["variant"]], np.log1p(3))
    np.testing.assert_allclose(x[1, col["log_article_age_days"]], np.log1p(30))
    np.testing.assert_allclose(x[:, col["log_customer_purchases"]], np.log1p([3, 3, 0]))
    # article 4 never sold, customer 3 never bought: no history, age capped
    assert x[2, col["log_sales_all"]] == 0 and x[2, col["repurchase_14d"]] == 0
    np.testing.assert_allclose(x[2, col["log_article_age_days"]], np.log1p(pair_head.AGE_CAP_DAYS))


def test_pair_zscores_equal_the_dense_zscores():
    g = torch.Generator().manual_seed(0)
    cust, art = torch.randn(6, 8, generator=g), torch.randn(50, 8, generator=g)
    dense = zscore(cust @ art.t()).double()
    customers = np.array([0, 3, 5, 5, 1])
    articles = np.array([7, 0, 49, 2, 13])
    z = pair_head.pair_zscores(cust, art, customers, articles, *embedding_moments(art), chunk=2)
    np.testing.assert_allclose(z, dense[customers, articles].numpy(), rtol=0, atol=1e-4)


def test_fit_learns_which_feature_decides_and_is_calibrated():
    rng = np.random.default_rng(0)
    n = 4000
    x = rng.normal(size=(n, len(pair_head.FEATURES)))
    labels = (rng.random(n) < 1 / (1 + np.exp(-3 * x[:, 2]))).astype(np.int8)  # only feature 2 matters
    head = pair_head.fit(x, labels)
    assert np.argmax(np.abs(head["coef"])) == 2 and head["pairs"] == n and head["positives"] == labels.sum()
    p = pair_head.probability(head, x)
    assert ((p > 0) & (p < 1)).all()
    # calibrated: the mean probability matches the positive rate, and the order follows feature 2
    assert abs(p.mean() - labels.mean()) < 0.01
    assert np.corrcoef(np.log(p / (1 - p)), x[:, 2])[0, 1] > 0.95  # the logit is ~linear in it

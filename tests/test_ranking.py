"""The ranking stage: labels and candidate recall for any customer index, and the GNN's scores it reads."""

import datetime as dt

import numpy as np
import pytest
import torch

from hmgnn.models.base import Interactions
from hmgnn.models.gnn import HeteroSAGERecommender
from hmgnn.ranking.candidates import GNNScores
from hmgnn.ranking.features import ArticleMeta
from hmgnn.ranking.fit import LabelWindow, window_rows


def test_labels_hold_for_customer_indices_whose_pair_keys_pass_int32():
    # customer x article keys beyond 2**31: 29,999 * 100,000 + 99,999 (customer indices are stored as int32)
    n_customers, n_articles = 30_000, 100_000
    day = np.datetime64("2020-09-01", "D")
    purchases = Interactions(np.array([5, 5, 29_999, 29_999, 29_999], np.int32),
                             np.array([3, 3, 99_999, 99_999, 7], np.int32),
                             np.array([day, day + 9, day, day + 9, day + 10]), n_customers, n_articles)
    meta = ArticleMeta(np.arange(n_articles, dtype=np.int32), {})
    window = LabelWindow(dt.date(2020, 9, 7), dt.date(2020, 9, 14))
    pairs, labels, _, stats = window_rows(purchases, window, meta, {"bought": 5}, None, max_customers=10, seed=0)
    assert pairs.customer.dtype == np.int64
    assert sorted(zip(pairs.customer.tolist(), pairs.article.tolist(), labels.tolist())) == [
        (5, 3, 1.0), (29_999, 99_999, 1.0)]
    assert stats["purchases"] == 3 and stats["recall"]["all"] == 2 / 3  # article 7 was never bought before


@pytest.mark.parametrize("decoder", ["dot", "mlp"])
def test_gnn_moments_and_pair_scores_match_the_dense_rows(decoder):
    # the dot decoder's mean and spread come from the embeddings (no pass over the articles): they must equal the
    # dense rows' mean and sample standard deviation, and pairs scored alone must equal the dense rows' entries
    torch.manual_seed(0)
    model = HeteroSAGERecommender(num_customers=40, num_articles=300, hidden_channels=8, decoder=decoder).eval()
    customer_emb, article_emb = torch.randn(40, 8) + 0.5, torch.randn(300, 8) * 0.3 + 1.0
    gnn = GNNScores(model, customer_emb, article_emb, torch.device("cpu"))
    customers = np.array([3, 0, 39, 17])
    dense = gnn.dense(customers)
    mean, std = gnn.moments(customers)
    torch.testing.assert_close(mean, dense.mean(1), atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(std, dense.std(1) + 1e-6, atol=1e-5, rtol=1e-5)
    rows, articles = np.array([0, 0, 2, 3]), np.array([5, 299, 0, 42])
    alone, with_dense = gnn.pairs(customers, rows, articles), gnn.pairs(customers, rows, articles, dense)
    np.testing.assert_allclose(alone[0], dense[rows, articles].numpy(), rtol=1e-5)
    np.testing.assert_allclose(alone[0], with_dense[0], rtol=1e-5)
    np.testing.assert_allclose(alone[1], with_dense[1], rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(alone[1], ((dense[rows, articles] - mean[rows]) / std[rows]).numpy(), rtol=1e-4,
                               atol=1e-5)

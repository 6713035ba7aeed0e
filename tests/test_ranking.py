"""The ranker's label windows: labels and candidate recall for any customer index."""

import datetime as dt

import numpy as np

from hmgnn.models.base import Interactions
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

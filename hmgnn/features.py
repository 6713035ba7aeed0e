"""Time-aware node inputs computed as of a day: customer recency and activity, article popularity and trend.

The GNN sees them beside the static node features; they are recomputed at every as-of day, so never leak.
"""

from __future__ import annotations

import datetime as dt

import numpy as np
import torch

from hmgnn.models.base import Interactions

CUSTOMER_TIME_FEATURES = ["log_purchases", "log_days_since_last", "log_purchases_28d", "has_history"]
ARTICLE_TIME_FEATURES = ["log_sales_7d", "log_sales_28d", "log_sales_all", "trend_7d_vs_28d", "log_days_on_sale"]
NEVER = 730  # days used for "never bought / never sold": about the span of the Kaggle data


def _standardise(columns: list[np.ndarray]) -> torch.Tensor:
    x = np.stack(columns, axis=1).astype(np.float32)
    # z-scores over nodes, so inputs keep one scale whatever the data's size or as-of day
    x -= x.mean(axis=0, keepdims=True)
    x /= x.std(axis=0, keepdims=True) + 1e-6
    return torch.from_numpy(x)


def time_features(inter: Interactions, as_of: dt.date) -> tuple[torch.Tensor, torch.Tensor]:
    """`(customer_extra [n_customers, 4], article_extra [n_articles, 5])` from the purchases up to `as_of`."""
    days = inter.days_before(as_of)
    nc, na = inter.n_customers, inter.n_articles
    c, a = inter.customer_index, inter.article_index

    purchases = np.bincount(c, minlength=nc)
    last = np.full(nc, NEVER, np.int64)
    np.minimum.at(last, c, days) if len(c) else None
    recent_c = np.bincount(c[days < 28], minlength=nc)
    customer = _standardise([np.log1p(purchases), np.log1p(np.minimum(last, NEVER)), np.log1p(recent_c),
                             (purchases > 0).astype(np.float32)])

    sales7 = np.bincount(a[days < 7], minlength=na)
    sales28 = np.bincount(a[days < 28], minlength=na)
    sales = np.bincount(a, minlength=na)
    first = np.zeros(na, np.int64)
    np.maximum.at(first, a, days) if len(a) else None
    article = _standardise([np.log1p(sales7), np.log1p(sales28), np.log1p(sales),
                            np.log1p(sales7) - np.log1p(sales28 / 4.0), np.log1p(first)])
    return customer, article

"""Pair features for the ranker: what is known about a (customer, article) pair as of a day.

`Snapshot` summarises the purchases up to its `as_of` day (its only notion of time), so the ranker's training
windows and the scored window get the same features from the same code, and nothing after `as_of` leaks in.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np
import polars as pl
import scipy.sparse as sp

from hmgnn import artifacts
from hmgnn.interactions import (MONTH, WEEK, Interactions, PurchasePairs, article_sales, decayed_sales, sales_trend,
                                window_popularity)
from hmgnn.models.base import lookup, stored_at, values_at
from hmgnn.models.baselines import OWN_HALF_LIFE, TREND_DAYS

SALES_WINDOWS = (1, WEEK, MONTH)
REPURCHASE_HALF_LIFE = 14.0
# article metadata levels whose share in a customer's purchases is a feature (the customer's taste for the level)
GROUP_COLUMNS = ("product_type_no", "department_no", "section_no", "garment_group_no")


@dataclass
class ArticleMeta:
    """Per-article categories the features need, as dense int32 codes: the product (colour variants share it) and
    each of GROUP_COLUMNS."""

    product: np.ndarray
    groups: dict[str, np.ndarray]

    @classmethod
    def read(cls, tables_dir: Path) -> ArticleMeta:
        frame = pl.read_parquet(tables_dir / artifacts.ARTICLES_PARQUET).sort("article_index")
        return cls.from_frame(frame)

    @classmethod
    def from_frame(cls, frame: pl.DataFrame) -> ArticleMeta:
        def codes(name: str) -> np.ndarray:
            return np.unique(frame[name].to_numpy(), return_inverse=True)[1].astype(np.int32)

        return cls(codes("product_code"), {g: codes(g) for g in GROUP_COLUMNS if g in frame.columns})

    def to_dict(self) -> dict[str, list[int]]:
        return {"product": self.product.tolist(), **{f"group:{k}": v.tolist() for k, v in self.groups.items()}}

    @classmethod
    def from_dict(cls, values: dict[str, list[int]]) -> ArticleMeta:
        groups = {k.split(":", 1)[1]: np.asarray(v, np.int32) for k, v in values.items() if k.startswith("group:")}
        return cls(np.asarray(values["product"], np.int32), groups)


def _per_code(times: sp.csr_matrix, codes: np.ndarray) -> sp.csr_matrix:
    """[customers, codes] purchases per code: each customer's counts per article (`times`, sorted rows) summed over
    the articles that share a code. Built from the pairs, not every purchase: each row is already the customer's."""
    m = sp.csr_matrix((times.data.copy(), codes[times.indices], times.indptr.copy()),
                      shape=(times.shape[0], int(codes.max(initial=-1)) + 1))
    m.sum_duplicates()  # sorts each row's codes, then adds up the equal ones
    return m


class Snapshot:
    """The purchases up to `as_of`, summarised per article, per customer and per (customer, article).

    Args:
        inter: purchases (anything after `as_of` is dropped).
        as_of: the day the features describe.
        meta: the articles' categories.
    """

    def __init__(self, inter: Interactions, as_of: dt.date, meta: ArticleMeta) -> None:
        inter = inter.until(as_of)
        self.inter, self.as_of, self.meta = inter, as_of, meta
        self.cache: dict[str, object] = {}  # what the candidate sources derive once per snapshot
        nc, na = inter.n_customers, inter.n_articles
        c, a = inter.customer_index, inter.article_index  # int32 at full scale: no int64 copies of every purchase
        day = inter.days_before(as_of)  # int64, >= 0
        days = day.astype(np.float64)
        self.n_customers, self.n_articles = nc, na

        # articles: sales over windows, trend, age on sale, price, the ages of their buyers
        self.sales = {d: article_sales(inter, where=day < d) for d in SALES_WINDOWS}
        self.sales_all = article_sales(inter)
        recent = days < MONTH
        self.trend = decayed_sales(inter, as_of, TREND_DAYS)
        self.sales_trend = sales_trend(self.sales[WEEK], self.sales[MONTH])
        self.first_sold = np.full(na, -1.0)
        np.maximum.at(self.first_sold, a, days)
        self.first_sold[self.first_sold < 0] = np.nan
        self.last_sold = np.full(na, np.inf)
        np.minimum.at(self.last_sold, a, days)
        self.last_sold[np.isinf(self.last_sold)] = np.nan
        self.popularity = window_popularity(inter, as_of, WEEK)  # last week's sales, all-time sales breaking ties
        order = np.argsort(-self.popularity, kind="stable")
        self.popularity_rank = np.empty(na)
        self.popularity_rank[order] = np.arange(na)
        price = inter.price if inter.price is not None else None
        if price is not None and len(price):
            sold = np.maximum(self.sales_all, 1)
            self.article_price = np.where(self.sales_all > 0, np.bincount(a, weights=price, minlength=na) / sold, np.nan)
        else:
            self.article_price = np.full(na, np.nan)
        ages = inter.customer_age.astype(np.float64) if inter.customer_age is not None else np.full(nc, -1.0)
        self.customer_age = np.where(ages >= 0, ages, np.nan)
        known = ~np.isnan(self.customer_age[c])
        age_sum = np.bincount(a[known], weights=self.customer_age[c[known]], minlength=na)
        age_n = article_sales(inter, where=known)
        self.buyers_age = np.where(age_n > 0, age_sum / np.maximum(age_n, 1), np.nan)

        # customers: activity and usual price
        self.purchases = np.bincount(c, minlength=nc).astype(np.float64)
        self.last_purchase = np.full(nc, np.inf)
        np.minimum.at(self.last_purchase, c, days)
        self.last_purchase[np.isinf(self.last_purchase)] = np.nan
        self.purchases_28d = np.bincount(c[recent], minlength=nc).astype(np.float64)
        if price is not None and len(price):
            self.customer_price = np.where(self.purchases > 0, np.bincount(c, weights=price, minlength=nc)
                                           / np.maximum(self.purchases, 1), np.nan)
        else:
            self.customer_price = np.full(nc, np.nan)

        # pairs, one entry per (customer, article) bought: times bought, days since the last and the first purchase
        # (stored + 1 so that "today" is not an empty cell), and two decayed counts. The five matrices share one
        # sparsity pattern (the same index arrays), float32 values: at full scale each is a few hundred MB
        bought = PurchasePairs(inter, day)
        span, d = bought.span, bought.days
        ln2 = float(np.log(2))
        self.times_bought = bought.matrix(bought.counts())
        self.last_bought = bought.matrix(bought.reduce(np.minimum, d) + 1.0)
        self.first_bought = bought.matrix(bought.reduce(np.maximum, d) + 1.0)
        self.repurchase = bought.matrix(bought.reduce(np.add, np.exp(-d * (ln2 / REPURCHASE_HALF_LIFE))))
        self.repurchase_long = bought.matrix(bought.reduce(np.add, np.exp(-d * (ln2 / OWN_HALF_LIFE))))
        del bought, d
        self.distinct = np.diff(self.times_bought.indptr).astype(np.float64)
        # how habitual buying is: shopping days per customer, and the share of an article's buyers (and of a
        # customer's articles) bought more than once
        shopping = pl.Series(c.astype(np.int64) * span + day).unique().to_numpy() // span
        self.shopping_days = np.bincount(shopping, minlength=nc).astype(np.float64)
        tb = self.times_bought
        again = (tb.data > 1).astype(np.float64)  # per (customer, article) pair: bought more than once
        buyers = np.bincount(tb.indices, minlength=na).astype(np.float64)
        pair_customer = np.repeat(np.arange(nc), np.diff(tb.indptr))
        with np.errstate(invalid="ignore", divide="ignore"):
            self.article_repeat = np.where(buyers > 0, np.bincount(tb.indices, again, na) / buyers, np.nan)
            self.customer_repeat = np.where(self.distinct > 0, np.bincount(pair_customer, again, nc) / self.distinct,
                                            np.nan)
        # the customer's purchases per product and per category level
        self.product_bought = _per_code(tb, meta.product)
        self.group_bought = {g: _per_code(tb, codes) for g, codes in meta.groups.items()}

    @property
    def feature_names(self) -> list[str]:
        return PAIR_FEATURES + [f"affinity_{g}" for g in self.meta.groups]

    def matrix(self, customers: np.ndarray, articles: np.ndarray, out: np.ndarray | None = None) -> np.ndarray:
        """float32 [n_pairs, len(feature_names)]: the pair features (NaN where a value is unknown), written into
        `out` when given."""
        pairs = _Pairs.of(self, customers.astype(np.int64), articles.astype(np.int64))
        out = np.empty((len(pairs.c), len(self.feature_names)), np.float32) if out is None else out
        with np.errstate(invalid="ignore", divide="ignore"):  # NaN marks an unknown value
            for j, (_, column) in enumerate(PAIR_COLUMNS):
                out[:, j] = column(pairs)
            for j, (g, codes) in enumerate(self.meta.groups.items(), len(PAIR_COLUMNS)):
                out[:, j] = lookup(self.group_bought[g], pairs.c, codes[pairs.a]) / np.maximum(pairs.purchases, 1)
        return out


@dataclass
class _Pairs:
    """What the pair columns are computed from: the snapshot `s`, the pairs' customers `c` and articles `a`, and
    the values the columns share, each looked up once."""

    s: Snapshot
    c: np.ndarray
    a: np.ndarray
    purchases: np.ndarray
    """The customer's purchases."""
    at: np.ndarray
    """Each pair's entry in the pair matrices (-1: never bought); the five share one sparsity pattern."""
    times: np.ndarray
    last: np.ndarray
    first: np.ndarray
    long: np.ndarray
    product: np.ndarray
    """The customer's purchases of the article's product (any colour)."""

    @classmethod
    def of(cls, s: Snapshot, c: np.ndarray, a: np.ndarray) -> _Pairs:
        at = stored_at(s.times_bought, c, a)
        times, last, first, long = (values_at(m, at) for m in (s.times_bought, s.last_bought, s.first_bought,
                                                               s.repurchase_long))
        return cls(s, c, a, s.purchases[c], at, times, last, first, long,
                   lookup(s.product_bought, c, s.meta.product[a]))

    @property
    def interval(self) -> np.ndarray:
        """The customer's own rhythm for the article: mean days between its purchases (NaN: bought once or never)."""
        return np.where(self.times > 1, (self.first - self.last) / np.maximum(self.times - 1, 1), np.nan)


log = np.log1p
# The ranker's pair features, in column order: each name beside the code that computes its column from `_Pairs`
# (the customer's taste for each of GROUP_COLUMNS follows them, as `affinity_<level>`)
PAIR_COLUMNS: list[tuple[str, Callable[[_Pairs], np.ndarray]]] = [
    ("log_times_bought", lambda p: log(p.times)),
    ("days_since_bought", lambda p: np.where(p.last > 0, p.last - 1, np.nan)),
    ("repurchase_14d", lambda p: values_at(p.s.repurchase, p.at)),
    ("repurchase_30d", lambda p: p.long),
    ("rebuy_interval_days", lambda p: p.interval),
    # how due the article is: days since the last purchase over the customer's usual interval
    ("rebuy_due", lambda p: np.where(p.times > 1, (p.last - 1) / np.maximum(p.interval, 1), np.nan)),
    # the `trending` baseline's own score
    ("trending_score", lambda p: p.s.trend[p.a] / max(p.s.trend.max(initial=0), 1e-12) + p.long),
    ("log_variants_bought", lambda p: log(p.product - p.times)),  # other colours of the article's product
    *((f"log_sales_{d}d", lambda p, d=d: log(p.s.sales[d][p.a])) for d in SALES_WINDOWS),
    ("log_sales_all", lambda p: log(p.s.sales_all[p.a])),
    ("trend_28d", lambda p: p.s.trend[p.a]),
    ("trend_7d_vs_28d", lambda p: p.s.sales_trend[p.a]),
    ("log_popularity_rank", lambda p: log(p.s.popularity_rank[p.a])),
    ("article_age_days", lambda p: p.s.first_sold[p.a]),
    ("days_since_sold", lambda p: p.s.last_sold[p.a]),
    ("log_customer_purchases", lambda p: log(p.purchases)),
    ("customer_days_since_last", lambda p: p.s.last_purchase[p.c]),
    ("log_customer_purchases_28d", lambda p: log(p.s.purchases_28d[p.c])),
    ("log_customer_distinct", lambda p: log(p.s.distinct[p.c])),
    ("article_price", lambda p: p.s.article_price[p.a]),
    ("price_vs_customer", lambda p: p.s.article_price[p.a] / p.s.customer_price[p.c]),
    ("customer_age", lambda p: p.s.customer_age[p.c]),
    ("buyers_age", lambda p: p.s.buyers_age[p.a]),
    ("age_gap", lambda p: p.s.customer_age[p.c] - p.s.buyers_age[p.a]),
    ("buy_rate", lambda p: p.times / np.maximum(p.s.shopping_days[p.c], 1)),
    ("article_repeat_rate", lambda p: p.s.article_repeat[p.a]),
    ("customer_repeat_rate", lambda p: p.s.customer_repeat[p.c]),
]
PAIR_FEATURES = [name for name, _ in PAIR_COLUMNS]

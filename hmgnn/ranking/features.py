"""Pair features for the ranker: what is known about a (customer, article) pair as of a day.

`Snapshot` summarises the purchases up to its `as_of` day (its only notion of time), so the ranker's training
windows and the scored window get the same features from the same code, and nothing after `as_of` leaks in.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import polars as pl
import scipy.sparse as sp

from hmgnn import artifacts
from hmgnn.interactions import Interactions, PurchasePairs, article_sales, decayed_sales, window_popularity
from hmgnn.models.base import lookup, stored_at, values_at
from hmgnn.models.baselines import OWN_HALF_LIFE, TREND_DAYS

SALES_WINDOWS = (1, 7, 28)
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
        recent = days < 28
        self.trend = decayed_sales(inter, as_of, TREND_DAYS)
        self.first_sold = np.full(na, -1.0)
        np.maximum.at(self.first_sold, a, days)
        self.first_sold[self.first_sold < 0] = np.nan
        self.last_sold = np.full(na, np.inf)
        np.minimum.at(self.last_sold, a, days)
        self.last_sold[np.isinf(self.last_sold)] = np.nan
        self.popularity = window_popularity(inter, as_of, 7)  # last week's sales, all-time sales breaking ties
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
        c, a = customers.astype(np.int64), articles.astype(np.int64)
        purchases = self.purchases[c]
        at = stored_at(self.times_bought, c, a)  # the five pair matrices share one sparsity pattern
        times, last, first, long = (values_at(m, at) for m in (self.times_bought, self.last_bought,
                                                               self.first_bought, self.repurchase_long))
        product = lookup(self.product_bought, c, self.meta.product[a])
        trend = self.trend / max(self.trend.max(initial=0), 1e-12)
        log = np.log1p
        with np.errstate(invalid="ignore", divide="ignore"):  # NaN marks an unknown value
            columns = [
                log(times), np.where(last > 0, last - 1, np.nan), values_at(self.repurchase, at), long,
                # the customer's own rhythm for the article: mean days between its purchases, and how due it is
                np.where(times > 1, (first - last) / np.maximum(times - 1, 1), np.nan),
                np.where(times > 1, (last - 1) / np.maximum((first - last) / np.maximum(times - 1, 1), 1), np.nan),
                trend[a] + long,  # the `trending` baseline's own score
                log(product - times),  # other colours of the article's product
                *(log(self.sales[d][a]) for d in SALES_WINDOWS), log(self.sales_all[a]), self.trend[a],
                log(self.sales[7][a]) - log(self.sales[28][a] / 4), log(self.popularity_rank[a]),
                self.first_sold[a], self.last_sold[a],
                log(purchases), self.last_purchase[c], log(self.purchases_28d[c]), log(self.distinct[c]),
                self.article_price[a], self.article_price[a] / self.customer_price[c],
                self.customer_age[c], self.buyers_age[a], self.customer_age[c] - self.buyers_age[a],
                times / np.maximum(self.shopping_days[c], 1), self.article_repeat[a], self.customer_repeat[c],
            ]
            for g, codes in self.meta.groups.items():
                columns.append(lookup(self.group_bought[g], c, codes[a]) / np.maximum(purchases, 1))
        out = np.empty((len(c), len(columns)), np.float32) if out is None else out
        for j, column in enumerate(columns):
            out[:, j] = column
        return out


PAIR_FEATURES = [
    "log_times_bought", "days_since_bought", "repurchase_14d", "repurchase_30d", "rebuy_interval_days",
    "rebuy_due", "trending_score", "log_variants_bought",
    *(f"log_sales_{d}d" for d in SALES_WINDOWS), "log_sales_all", "trend_28d", "trend_7d_vs_28d",
    "log_popularity_rank", "article_age_days", "days_since_sold",
    "log_customer_purchases", "customer_days_since_last", "log_customer_purchases_28d", "log_customer_distinct",
    "article_price", "price_vs_customer", "customer_age", "buyers_age", "age_gap",
    "buy_rate", "article_repeat_rate", "customer_repeat_rate",
]

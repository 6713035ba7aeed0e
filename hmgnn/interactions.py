"""Purchases and what every step counts from them: the `Interactions` a model sees, article sales over a window,
the customer x article purchase matrix, the pattern of the (customer, article) pairs bought, and the windows (the
split's dates, the buyers of a scored window, the ranker's label windows). Each of these is defined here once; the
steps and models import them."""

from __future__ import annotations

import datetime as dt
from dataclasses import asdict, dataclass

import numpy as np
import polars as pl
import scipy.sparse as sp

from hmgnn.metrics import hits_matrix, map_at_k_curve

@dataclass(frozen=True, eq=False)
class Interactions:
    """The purchases a model may see, as parallel arrays, with the sizes of the id maps in tables/.

    Args:
        customer_index: int [n_rows] rows of customers.parquet.
        article_index: int [n_rows] rows of articles.parquet.
        t_dat: datetime64[D] [n_rows] purchase days.
        n_customers: number of customers (every index is < this; customers without rows are cold).
        n_articles: number of articles.
        customer_age: optional int [n_customers], -1 where unknown; picks the cold-start age band.
        price: optional float [n_rows] price paid (the ranker's price features).
    """

    customer_index: np.ndarray
    article_index: np.ndarray
    t_dat: np.ndarray
    n_customers: int
    n_articles: int
    customer_age: np.ndarray | None = None
    price: np.ndarray | None = None

    def __post_init__(self) -> None:
        n = len(self.customer_index)
        if len(self.article_index) != n or len(self.t_dat) != n:
            raise ValueError("customer_index, article_index and t_dat must have the same length")
        if n and (self.customer_index.min() < 0 or self.customer_index.max() >= self.n_customers):
            raise ValueError(f"customer_index must lie in [0, {self.n_customers})")
        if n and (self.article_index.min() < 0 or self.article_index.max() >= self.n_articles):
            raise ValueError(f"article_index must lie in [0, {self.n_articles})")
        if self.customer_age is not None and len(self.customer_age) != self.n_customers:
            raise ValueError(f"customer_age needs one entry per customer ({self.n_customers})")
        if self.price is not None and len(self.price) != n:
            raise ValueError("price needs one entry per purchase")

    @classmethod
    def from_frame(cls, frame: pl.DataFrame, n_customers: int | None = None, n_articles: int | None = None,
                   customer_age: np.ndarray | None = None) -> Interactions:
        """From a frame with customer_index, article_index and t_dat (the tables/ and split/ schema)."""
        cust = frame["customer_index"].to_numpy().astype(np.int32, copy=False)
        art = frame["article_index"].to_numpy().astype(np.int32, copy=False)
        days = frame["t_dat"].cast(pl.Date).to_numpy().astype("datetime64[D]")
        price = frame["price"].to_numpy().astype(np.float32) if "price" in frame.columns else None
        return cls(cust, art, days,
                   n_customers if n_customers is not None else int(cust.max(initial=-1)) + 1,
                   n_articles if n_articles is not None else int(art.max(initial=-1)) + 1,
                   customer_age, price)

    def __len__(self) -> int:
        return len(self.customer_index)

    @classmethod
    def concat(cls, parts: list[Interactions]) -> Interactions:
        """The purchases of `parts` (same id maps) one after another."""
        first = parts[0]
        prices = [p.price for p in parts]
        return cls(np.concatenate([p.customer_index for p in parts]), np.concatenate([p.article_index for p in parts]),
                   np.concatenate([p.t_dat for p in parts]), first.n_customers, first.n_articles, first.customer_age,
                   None if any(x is None for x in prices) else np.concatenate(prices))

    @property
    def last_day(self) -> dt.date | None:
        return self.t_dat.max().astype(dt.date) if len(self) else None

    def until(self, as_of: dt.date) -> Interactions:
        """Only the purchases on or before `as_of`."""
        keep = self.t_dat <= np.datetime64(as_of, "D")
        if keep.all():
            return self
        return self.subset(keep)

    def subset(self, keep: np.ndarray) -> Interactions:
        """The purchases where the boolean mask `keep` is set."""
        return Interactions(self.customer_index[keep], self.article_index[keep], self.t_dat[keep],
                            self.n_customers, self.n_articles, self.customer_age,
                            None if self.price is None else self.price[keep])

    def days_before(self, as_of: dt.date) -> np.ndarray:
        """Days between each purchase and `as_of` (0 on `as_of`)."""
        if self.t_dat.dtype == np.dtype("datetime64[D]"):  # integer days: datetime arithmetic checks each value for NaT
            return np.datetime64(as_of, "D").astype(np.int64) - self.t_dat.view(np.int64)
        return (np.datetime64(as_of, "D") - self.t_dat).astype(np.int64)

    def user_items(self) -> sp.csr_matrix:
        """[n_customers, n_articles] purchase counts, sorted indices (for filtering and lookups)."""
        return purchase_matrix(self)


WEEK = 7
"""Days in the short sales window: last week's sales (Kaggle's test window is a week)."""
MONTH = 28
"""Days in the long sales window: four weeks, so that a quarter of its sales is a week's."""


def sales_trend(week: np.ndarray, month: np.ndarray) -> np.ndarray:
    """log(1 + last week's sales) against log(1 + a quarter of the last MONTH days' sales): above 0 where an
    article sells faster this week than over the month (the GNN's node input and the ranker's feature alike)."""
    return np.log1p(week) - np.log1p(month / 4)


def article_sales(inter: Interactions, as_of: dt.date | None = None, days: int | None = None,
                  where: np.ndarray | None = None) -> np.ndarray:
    """Purchases of each article (float64 [n_articles]): all of them, or those in the `days` days up to and
    including `as_of`; `where` (a boolean per purchase) counts only those purchases."""
    keep = where
    if days is not None:
        recent = inter.days_before(as_of) < days
        keep = recent if keep is None else keep & recent
    articles = inter.article_index if keep is None else inter.article_index[keep]
    return np.bincount(articles, minlength=inter.n_articles).astype(np.float64)


def window_popularity(inter: Interactions, as_of: dt.date, days: int) -> np.ndarray:
    """Purchases of each article in the `days` days up to `as_of`, plus an all-time tie-break in [0, 1).

    The tie-break keeps the ranking total (and useful beyond the window's few articles on small data).
    """
    all_time = article_sales(inter)
    return article_sales(inter, as_of, days) + all_time / (all_time.max(initial=0) + 1)


def decayed_sales(inter: Interactions, as_of: dt.date, days: int) -> np.ndarray:
    """Each article's purchases in the `days` days up to `as_of`, each weighted 1 / (days ago + 1): what is selling
    now (the `trending` baseline's trend and the ranker's trend feature)."""
    ago = inter.days_before(as_of)
    recent = ago < days
    return np.bincount(inter.article_index[recent], weights=1.0 / (ago[recent] + 1),
                       minlength=inter.n_articles).astype(np.float64)  # int64 when empty


def purchase_matrix(inter: Interactions, weights: np.ndarray | None = None,
                    where: np.ndarray | None = None) -> sp.csr_matrix:
    """The customer x article matrix [n_customers, n_articles]: per pair the number of purchases (or the sum of
    their `weights`, one per purchase), one stored entry per pair bought, sorted indices; `where` (a boolean per
    purchase) keeps only those purchases."""
    c, a = inter.customer_index, inter.article_index
    values = np.ones(len(inter), np.float32) if weights is None else np.asarray(weights)
    if where is not None:
        c, a, values = c[where], a[where], values[where]
    m = sp.csr_matrix((values, (c, a)), shape=(inter.n_customers, inter.n_articles))
    m.sum_duplicates()
    return m


def _sorted_pair_days(c: np.ndarray, a: np.ndarray, day: np.ndarray, na: int,
                      span: int) -> tuple[np.ndarray, np.ndarray]:
    """Each purchase's (customer * na + article) key and its day, sorted by key then day: one sort, and within a
    pair its days in a fixed order, so that sums over a pair are the same on every run."""
    if (int(c.max(initial=0)) + 1) * na * span < 2**63:
        key = pl.Series((c.astype(np.int64) * na + a) * span + day).sort().to_numpy()
        return key // span, (key % span).astype(np.float64)
    order = np.lexsort((day, a, c))
    return c[order].astype(np.int64) * na + a[order], day[order].astype(np.float64)


class PurchasePairs:
    """The (customer, article) pairs bought, one entry each in the customer x article matrix's CSR order, with the
    days before the as-of day of each pair's purchases grouped by pair: the pattern that per-pair summaries (times
    bought, the last and first purchase, decayed counts) share, each a CSR matrix over the same index arrays.

    Args:
        inter: the purchases (none after the as-of day).
        day: int [n_rows] each purchase's days before the as-of day (`inter.days_before(as_of)`).
    """

    def __init__(self, inter: Interactions, day: np.ndarray) -> None:
        nc, na = inter.n_customers, inter.n_articles
        self.shape = (nc, na)
        self.span = int(day.max(initial=0)) + 1
        pair, self.days = _sorted_pair_days(inter.customer_index, inter.article_index, day, na, self.span)
        """float64 days before the as-of day of every purchase, grouped by pair (pairs in CSR order), ascending
        within a pair."""
        self.starts = np.flatnonzero(np.r_[True, pair[1:] != pair[:-1]]) if len(pair) else np.zeros(0, np.int64)
        pair = pair[self.starts]
        index = np.int32 if len(pair) < 2**31 else np.int64
        self.indices = (pair % na).astype(index)
        self.indptr = np.zeros(nc + 1, index)
        np.cumsum(np.bincount(pair // na, minlength=nc), out=self.indptr[1:])

    def __len__(self) -> int:
        return len(self.starts)

    def counts(self) -> np.ndarray:
        """Purchases per pair."""
        return np.diff(np.r_[self.starts, len(self.days)])

    def reduce(self, f: np.ufunc, values: np.ndarray) -> np.ndarray:
        """`f` (np.minimum, np.add, ...) over each pair's entries of `values` (one per purchase, in `days` order)."""
        return f.reduceat(values, self.starts) if len(self.starts) else np.zeros(0)

    def matrix(self, values: np.ndarray, dtype: type = np.float32) -> sp.csr_matrix:
        """The customer x article matrix of one value per pair, sharing this pattern's index arrays."""
        return sp.csr_matrix((values.astype(dtype), self.indices, self.indptr), shape=self.shape, copy=False)


@dataclass(frozen=True)
class Windows:
    """The split's inclusive date ranges (`hmgnn sample`): history_start..history_end < val_start..val_end (= the
    cutoff) < test_start..test_end."""

    history_start: dt.date
    history_end: dt.date
    val_start: dt.date
    val_end: dt.date
    test_start: dt.date
    test_end: dt.date

    def as_dict(self) -> dict[str, str]:
        return {k: v.isoformat() for k, v in asdict(self).items()}


@dataclass
class WindowTruth:
    """The customers who bought in a scored window and what they bought, one entry per (customer, article) pair:
    what MAP@12 is measured against, as Kaggle scored it."""

    customers: np.ndarray
    """Sorted int64 customer indices with a purchase in the window."""
    bought_customers: np.ndarray
    bought_articles: np.ndarray

    @classmethod
    def of(cls, inter: Interactions, limit: int = 0, seed: int = 0, among: np.ndarray | None = None) -> WindowTruth:
        """The window's purchases `inter`; `among` (a boolean per customer) keeps only those customers, `limit` a
        seeded sample of that many of them."""
        customers = np.unique(inter.customer_index).astype(np.int64)
        if among is not None:
            customers = customers[among[customers]]
        if limit and len(customers) > limit:
            # a seeded sample keeps each epoch's validation cheap at full scale
            customers = np.sort(np.random.default_rng(seed).choice(customers, limit, replace=False))
        keep = np.isin(inter.customer_index, customers)
        pairs = np.unique(inter.customer_index[keep].astype(np.int64) * inter.n_articles + inter.article_index[keep])
        bought_customers, bought_articles = np.divmod(pairs, inter.n_articles)
        return cls(customers, bought_customers, bought_articles)

    def hits(self, top: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(hits bool [customers, K], distinct articles bought per customer) of `top`, one row per customer."""
        return hits_matrix(top, self.customers, self.bought_customers, self.bought_articles)

    def map_at_k(self, top: np.ndarray, k: int = 12) -> float:
        hits, n_relevant = self.hits(top)
        return float(map_at_k_curve(hits[:, :k], n_relevant)[-1])


@dataclass
class LabelWindow:
    """A window of the ranker's training: features as of `as_of`; labels the purchases after it, up to and including
    `end`."""

    as_of: dt.date
    end: dt.date
    customers: int = 0
    """Customers with a purchase in the window and one before it (the ranker's groups)."""

    def inside(self, purchases: Interactions) -> np.ndarray:
        """Mask of the purchases in (as_of, end]."""
        t = purchases.t_dat
        return (t > np.datetime64(self.as_of, "D")) & (t <= np.datetime64(self.end, "D"))

    def labelled(self, purchases: Interactions) -> np.ndarray:
        """Customers who bought in (as_of, end] and before it."""
        before = np.zeros(purchases.n_customers, bool)
        before[purchases.customer_index[purchases.t_dat <= np.datetime64(self.as_of, "D")]] = True
        buyers = np.unique(purchases.customer_index[self.inside(purchases)])
        return buyers[before[buyers]]

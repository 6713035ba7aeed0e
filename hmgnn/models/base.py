"""The recommender interface that every model implements (the baselines and the GNN), shaped like implicit's:
a model gives dense scores; the base ranks them in chunks with exact ties, filters, restricts and falls back."""

from __future__ import annotations

import datetime as dt
import inspect
import os
from concurrent.futures import ThreadPoolExecutor
from abc import ABC, abstractmethod
from typing import Any, Callable, ClassVar, TypeVar

import numpy as np
import polars as pl
import scipy.sparse as sp
import torch

from hmgnn.interactions import WEEK, Interactions, article_sales, window_popularity
from hmgnn.models.reasons import ALL_TIME, BOUGHT, MODEL, POPULAR, Reason

ArrayLike = Any  # an int, a sequence of ints or a numpy/torch integer array
R = TypeVar("R", bound="Recommender")
T = TypeVar("T")

# Cold-start segments: [low, high) years; customers without an age get the global bestsellers.
AGE_BANDS: tuple[tuple[int, int, str], ...] = (
    (0, 25, "under 25"), (25, 35, "25-34"), (35, 45, "35-44"), (45, 55, "45-54"), (55, 200, "55+"))
GLOBAL_BAND = len(AGE_BANDS)
BESTSELLER_DAYS = WEEK
EXPLAIN_SCAN = 8
"""`explain` finds the purchases of up to this many customers by a pass over all purchases each; beyond, it groups
every purchase by customer once, and reads them from there from then on."""


def run_starts(values: np.ndarray) -> np.ndarray:
    """Indices where a run of equal consecutive values begins (for grouped arrays)."""
    return np.flatnonzero(np.concatenate(([True], values[1:] != values[:-1]))) if len(values) else np.zeros(0, np.int64)


def position_in_run(values: np.ndarray) -> np.ndarray:
    """0-based position of each element within its run of equal consecutive values."""
    starts = run_starts(values)
    return np.arange(len(values)) - np.repeat(starts, np.diff(starts, append=len(values)))


def age_band(ages: np.ndarray) -> np.ndarray:
    """Band number of each age (AGE_BANDS order); GLOBAL_BAND where the age is unknown (< 0)."""
    ages = np.asarray(ages)
    band = np.digitize(ages, [low for low, _, _ in AGE_BANDS[1:]])
    return np.where(ages < 0, GLOBAL_BAND, band)


def band_sales(inter: Interactions, as_of: dt.date, bands: np.ndarray) -> list[np.ndarray]:
    """Each age band's purchases of each article in the BESTSELLER_DAYS up to `as_of` (AGE_BANDS order; `bands`:
    each customer's band): the age-band bestsellers of the cold-start fallback and of the ranker's candidates."""
    recent = inter.days_before(as_of) < BESTSELLER_DAYS
    buyer_band = bands[inter.customer_index]
    return [article_sales(inter, where=recent & (buyer_band == b)) for b in range(len(AGE_BANDS))]


class ColdStartFallback:
    """Bestsellers of the last week per age band, for customers without a purchase history.

    Args:
        inter: the purchases the model was fit on.
        as_of: the last day the model may see.
        scale: maps each band's sales vector to the model's scores (any map that keeps the order).
    """

    def __init__(self, inter: Interactions, as_of: dt.date,
                 scale: Callable[[np.ndarray], np.ndarray] | None = None) -> None:
        ages = inter.customer_age if inter.customer_age is not None else np.full(inter.n_customers, -1)
        self.band = age_band(ages).astype(np.int8)
        overall = window_popularity(inter, as_of, BESTSELLER_DAYS)
        self.week_sales = article_sales(inter, as_of, BESTSELLER_DAYS)
        self.band_sales = band_sales(inter, as_of, self.band)  # which say why an article is in a band's list
        vectors = []
        for counts in self.band_sales:
            # the band's own bestsellers first; the overall ranking breaks ties and fills the rest
            vectors.append(counts + overall / (overall.max(initial=0) + 1))
        vectors.append(overall)
        # separate arrays: each keeps its cached ranking order (see Recommender._order)
        self.vectors = [scale(v) for v in vectors] if scale is not None else vectors

    def reason(self, customer_index: int) -> str:
        b = int(self.band[customer_index])
        if b == GLOBAL_BAND:
            return "no purchase history and no age: this week's global bestsellers"
        return f"no purchase history: this week's bestsellers among customers aged {AGE_BANDS[b][2]}"

    def article_reasons(self, band: int, articles: np.ndarray) -> list[Reason]:
        """Why each of `articles` is in band `band`'s list (GLOBAL_BAND: everyone's): sold to the band this week,
        else to anyone this week, else by its all-time sales (the tie-break that fills the list)."""
        out = []
        for a in articles.tolist():
            if band != GLOBAL_BAND and self.band_sales[band][a] > 0:
                out.append(Reason(POPULAR, (POPULAR,), band=AGE_BANDS[band][2]))
            else:
                out.append(bestseller_reason(self.week_sales, a))
        return out


def bestseller_reason(week_sales: np.ndarray, article: int) -> Reason:
    """Why a popularity ranking (`window_popularity`: the week's sales, all-time sales breaking ties) holds
    `article`: sold this week, or by its all-time sales."""
    return Reason(POPULAR if week_sales[article] > 0 else ALL_TIME, (POPULAR,))


class Recommender(ABC):
    """A recommender: `fit` on purchases up to a day, then `recommend` top-k articles or `score` pairs.

    Subclasses implement `_fit` and `score_all` (raw dense scores); the base does the rest: chunked exact
    top-k (ties go to the smaller article_index), already-bought filtering, candidate sets, the cold-start
    fallback for customers without history, and pairwise scores. Models whose scores are one shared vector
    plus sparse per-customer boosts also implement `shared_scores`, which lets the base rank without ever
    building a dense [batch, n_articles] matrix.

    Args:
        cold_start: give customers without a purchase history their age band's bestsellers.
        batch_size: customers scored per dense chunk.
    """

    name: ClassVar[str] = ""
    filters_bought: ClassVar[bool] = False
    """True when the model never recommends an article the customer already bought (`popular-new`)."""
    score_kind: ClassVar[str] = "rank"
    """What a score means for the binary metrics: 'logit', 'probability' or 'rank' (only the order counts)."""

    @property
    def ranks_candidates(self) -> bool:
        """True when the model ranks a few candidates per customer itself (`recommend` never builds dense scores):
        a customer is then ranked on their own, not through `score_all`."""
        return False

    def keep_candidates(self) -> None:
        """Compute each customer's share of the candidate stage that depends on nothing but the fitted model, once,
        and keep it for every later `recommend` call (a server's start-up). Nothing to do for a model without one."""

    def __init__(self, cold_start: bool = True, batch_size: int = 1024) -> None:
        self.cold_start = cold_start
        self.batch_size = batch_size
        self.as_of: dt.date | None = None

    @classmethod
    def from_config(cls: type[R], cfg: Any) -> R:
        """Build the model for a run; models with a checkpoint (the GNN) load it from `cfg.workdir` here."""
        return cls()

    def __repr__(self) -> str:
        names = [p for p in inspect.signature(type(self).__init__).parameters if p != "self"]
        args = ", ".join(f"{p}={getattr(self, p)!r}" for p in names if hasattr(self, p))
        return f"{type(self).__name__}({args})"

    # ---- what a model implements -------------------------------------------------------------------------
    @abstractmethod
    def _fit(self, interactions: Interactions, as_of: dt.date) -> None:
        """Learn from `interactions` (already cut at `as_of`)."""

    @abstractmethod
    def score_all(self, customer_indices: np.ndarray) -> np.ndarray | torch.Tensor:
        """Raw scores [len(customer_indices), n_articles] (higher is better; -inf never recommended), as a new
        array or tensor: the base writes the filter into it."""

    def shared_scores(self) -> tuple[np.ndarray, sp.csr_matrix | None] | None:
        """Optional fast path: (shared [n_articles], boosts [n_customers, n_articles] or None) such that
        score_all(c) == shared + boosts[c]. None (the default) means: use score_all."""
        return None

    # ---- fitting ---------------------------------------------------------------------------------------------
    def fit(self: R, interactions: Interactions | pl.DataFrame, as_of: dt.date | None = None) -> R:
        """Fit on the purchases up to and including `as_of` (default: the last day in `interactions`)."""
        if isinstance(interactions, pl.DataFrame):
            interactions = Interactions.from_frame(interactions)
        as_of = as_of or interactions.last_day or dt.date.today()
        interactions = interactions.until(as_of)  # no leakage: nothing after as_of is ever seen
        self.as_of = as_of
        self.n_customers, self.n_articles = interactions.n_customers, interactions.n_articles
        self.user_items = interactions.user_items()
        self._history = np.diff(self.user_items.indptr) > 0
        self._fallback = ColdStartFallback(interactions, as_of, self._fallback_scale)
        self._interactions = interactions  # a reference, not a copy: what `explain` reads a customer's purchases from
        self._by_customer: tuple[np.ndarray, np.ndarray] | None = None  # those purchases grouped, once `explain` needs
        self._orders: dict[int, tuple[np.ndarray, np.ndarray, np.ndarray]] = {}
        self._fit(interactions, as_of)
        shared = self.shared_scores()
        for vector in self._fallback.vectors + ([shared[0]] if shared is not None else []):
            self._order(vector, None)  # sorted now, so no single request pays for it
        return self

    def _fallback_scale(self, sales: np.ndarray) -> np.ndarray:
        """The cold-start fallback's scores of an age band's sales vector: the sales themselves, unless a model
        puts them on the scale of its own scores (keeping their order)."""
        return sales

    def _check_fitted(self) -> None:
        if self.as_of is None:
            raise RuntimeError(f"{type(self).__name__} is not fitted; call fit() first")

    # ---- cold start -----------------------------------------------------------------------------------------
    def is_cold(self, customer_indices: ArrayLike) -> np.ndarray:
        """True for customers that get the cold-start fallback (no purchase seen at fit time)."""
        self._check_fitted()
        customers = self._customers(customer_indices)
        if not self.cold_start:
            return np.zeros(len(customers), bool)
        return ~self._history[customers]

    def fallback_reason(self, customer_index: int) -> str | None:
        """Why `customer_index` gets the fallback, in words; None when the model ranks them itself."""
        if not self.is_cold(int(customer_index))[0]:
            return None
        return self._fallback.reason(int(customer_index))

    def recommend_unknown(self, k: int = 12, age: int | None = None) -> tuple[np.ndarray, np.ndarray]:
        """Top-k for a customer missing from the id maps: the bestsellers of their age band (or global)."""
        self._check_fitted()
        band = GLOBAL_BAND if age is None or age < 0 else int(age_band(np.array([age]))[0])
        ids, vals = self._rank_shared(self._fallback.vectors[band], None, np.zeros(1, np.int64),
                                      min(k, self.n_articles), False, None)
        return ids[0], vals[0]

    # ---- why each article ranks ------------------------------------------------------------------------------
    def recommend_explained(self, customer_indices: ArrayLike, k: int = 12, filter_already_bought: bool = False
                            ) -> tuple[np.ndarray, np.ndarray, list]:
        """`recommend`'s top-k with the `Reason` of each article: (ids, scores, reasons), 1-D and one list of reasons
        for one index, 2-D and a list per customer for an array. An empty slot (-1) has no reason: each list holds
        one per article, in the row's order."""
        ids, scores = self.recommend(customer_indices, k=k, filter_already_bought=filter_already_bought)
        if np.ndim(customer_indices) == 0:
            return ids, scores, self.explain(customer_indices, ids[None])[0]
        return ids, scores, self.explain(customer_indices, ids)

    def explain(self, customer_indices: ArrayLike, article_indices: ArrayLike) -> list[list[Reason]]:
        """Why each customer's articles (one row of `article_indices` per customer, as `recommend` ranked them; -1
        slots skipped) rank for them: a list of `Reason` per customer."""
        self._check_fitted()
        customers = self._customers(customer_indices)
        rows = np.atleast_2d(np.asarray(article_indices, np.int64))
        if len(rows) != len(customers):
            raise ValueError(f"{len(customers)} customers but {len(rows)} rows of articles")
        cold = self.is_cold(customers)
        if (~cold).sum() > EXPLAIN_SCAN and self._by_customer is None:
            self._by_customer = _grouped_by(self._interactions.customer_index, self.n_customers)
        out = []
        for c, row, fallback in zip(customers.tolist(), rows, cold.tolist()):
            row = row[row >= 0]
            out.append(self._fallback.article_reasons(int(self._fallback.band[c]), row) if fallback
                       else self._explain(c, row))
        return out

    def explain_unknown(self, article_indices: ArrayLike, age: int | None = None) -> list[Reason]:
        """Why `recommend_unknown`'s articles (same `age`) rank: the bestsellers of the age band, or everyone's."""
        band = GLOBAL_BAND if age is None or age < 0 else int(age_band(np.array([age]))[0])
        row = np.asarray(article_indices, np.int64)
        return self._fallback.article_reasons(band, row[row >= 0])

    def _explain(self, customer: int, articles: np.ndarray) -> list[Reason]:
        """Why `articles` rank for a customer with a history; a model with candidate sources or parts of its score
        it can name says more than this."""
        return [Reason(MODEL, detail=self.name) for _ in articles.tolist()]

    def _bought_facts(self, customer: int, articles: np.ndarray) -> list[tuple[int, dt.date | None]]:
        """(times bought, the last day bought; None where never) of each of `articles` by `customer`, from the
        purchases the model was fit on: read from them grouped by customer where `explain` has grouped them, else
        found by one pass over them (cheaper for a few customers' answers than grouping every purchase)."""
        inter = self._interactions
        if self._by_customer is not None:
            starts, order = self._by_customer
            mine = order[starts[customer]:starts[customer + 1]]
        else:
            mine = np.flatnonzero(inter.customer_index == customer)
        bought, days = inter.article_index[mine], inter.t_dat[mine]
        out = []
        for a in articles.tolist():
            hit = bought == a
            out.append((int(hit.sum()), days[hit].max().astype(dt.date) if hit.any() else None))
        return out

    def _bought_reasons(self, customer: int, articles: np.ndarray) -> list[Reason | None]:
        """The BOUGHT reason of each of `articles` the customer bought, else None."""
        return [Reason(BOUGHT, (BOUGHT,), times=times, last=last) if times else None
                for times, last in self._bought_facts(customer, articles)]

    # ---- ranking ---------------------------------------------------------------------------------------------
    def recommend(self, customer_indices: ArrayLike, k: int = 12, filter_already_bought: bool = False,
                  candidates: ArrayLike | None = None, filter_items: ArrayLike | None = None,
                  batch_size: int | None = None) -> tuple[np.ndarray, np.ndarray]:
        """Top-k article indices and their scores, best first, ties broken by the smaller article_index.

        Args:
            customer_indices: one index (1-D results of length k) or an array of them (2-D [n, k]).
            k: number of articles; clipped to the number of articles that can be ranked.
            filter_already_bought: drop the articles the customer bought in the fit data.
            candidates: rank only these article indices.
            filter_items: never recommend these article indices (not together with `candidates`).
            batch_size: customers per dense chunk (default: the model's).

        Returns:
            (article_indices int64, scores float32); a slot that nothing can fill holds -1 and -inf.

        Raises:
            ValueError: on bad indices, k < 1, or conflicting options (candidates with filter_items, or
                candidates that are all filtered for some customer).
        """
        self._check_fitted()
        single = np.ndim(customer_indices) == 0
        customers = self._customers(customer_indices)
        if k < 1:
            raise ValueError(f"k must be >= 1, got {k}")
        cand = self._candidates(candidates, filter_items)
        n_avail = self.n_articles if cand is None else len(cand)
        k = min(k, n_avail)
        filt = filter_already_bought or self.filters_bought
        if filt and candidates is not None:
            self._check_candidates_left(customers, cand)
        ids = np.full((len(customers), k), -1, np.int64)
        vals = np.full((len(customers), k), -np.inf, np.float32)
        batch = batch_size or self.batch_size
        cold = self.is_cold(customers)
        if cold.any():  # one shared vector per age band: always the fast path
            bands = self._fallback.band[customers]
            for b in np.unique(bands[cold]):
                rows = np.flatnonzero(cold & (bands == b))
                self._fill(ids, vals, rows, customers, k, filt, cand, self._fallback.vectors[b], None, batch)
        warm = np.flatnonzero(~cold)
        if len(warm):
            shared = self.shared_scores()
            if shared is not None:
                self._fill(ids, vals, warm, customers, k, filt, cand, shared[0], shared[1], batch)
            else:
                parts = [warm[start:start + batch] for start in range(0, len(warm), batch)]
                ranked = in_parallel(lambda rows: self._rank_dense(customers[rows], k, filt, cand), parts)
                for rows, (i, v) in zip(parts, ranked):
                    ids[rows], vals[rows] = i, v
        return (ids[0], vals[0]) if single else (ids, vals)

    def _fill(self, ids: np.ndarray, vals: np.ndarray, rows: np.ndarray, customers: np.ndarray, k: int, filt: bool,
              cand: np.ndarray | None, shared: np.ndarray, boosts: sp.csr_matrix | None, batch: int) -> None:
        # the sparse path is cheap per customer, so it takes bigger chunks than the dense one
        step = max(batch, 4096)
        for start in range(0, len(rows), step):
            r = rows[start:start + step]
            i, v = self._rank_shared(shared, boosts, customers[r], k, filt, cand)
            ids[r], vals[r] = i, v

    def _rank_dense(self, customers: np.ndarray, k: int, filt: bool,
                    cand: np.ndarray | None) -> tuple[np.ndarray, np.ndarray]:
        return self.rank_scores(torch.as_tensor(self.score_all(customers)), customers, k, filt, cand)

    def rank_scores(self, scores: torch.Tensor, customers: np.ndarray, k: int, filt: bool | np.ndarray,
                    cand: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
        """Exact top-k (ids, scores; -1 in empty slots) of the customers' dense scores ([len(customers), n]),
        bought articles dropped where `filt` (one bool for all rows, or one per row). With `cand`, `scores` may
        hold the candidates' columns only ([len(customers), len(cand)])."""
        if not scores.is_floating_point() or scores.dtype in (torch.float16, torch.bfloat16):
            scores = scores.float()
        if cand is not None and scores.shape[1] != len(cand):
            scores = scores[:, torch.as_tensor(cand, device=scores.device)]
        filtered = np.flatnonzero(np.broadcast_to(filt, len(customers)))
        if len(filtered):
            r, c = self._bought(customers[filtered], cand)
            scores[torch.as_tensor(filtered[r], device=scores.device),
                   torch.as_tensor(c, device=scores.device)] = -torch.inf
        vals, pos = top_k(scores, min(k, scores.shape[1]))
        vals, pos = vals.cpu().numpy(), pos.cpu().numpy()
        ids = pos if cand is None else cand[pos]
        ids = np.where(np.isneginf(vals), -1, ids)
        if ids.shape[1] < k:  # fewer columns than slots (a model's own candidate set): empty slots
            pad = k - ids.shape[1]
            ids = np.pad(ids, ((0, 0), (0, pad)), constant_values=-1)
            vals = np.pad(vals, ((0, 0), (0, pad)), constant_values=-np.inf)
        return ids, vals.astype(np.float32)

    def _rank_shared(self, shared: np.ndarray, boosts: sp.csr_matrix | None, customers: np.ndarray, k: int,
                     filt: bool, cand: np.ndarray | None) -> tuple[np.ndarray, np.ndarray]:
        """Top-k of shared + boosts[c] without a dense matrix: the best unboosted articles are a prefix of
        one global order, so only k + (#boosted or filtered) of it can matter per customer."""
        n_rows = len(customers)
        v = shared if cand is None else shared[cand]
        order, rank_of = self._order(shared, cand)
        pos_of = None
        if cand is not None:
            pos_of = np.full(self.n_articles, -1, np.int64)
            pos_of[cand] = np.arange(len(cand))
        parts = []  # (row, position, score) of every article whose score differs from `shared`
        if boosts is not None:
            r, c, b = csr_rows(boosts, customers)
            p = c if pos_of is None else pos_of[c]
            keep = p >= 0
            parts.append((r[keep], p[keep], v[p[keep]] + b[keep]))
        if filt:
            r, p = self._bought(customers, cand)
            parts.append((r, p, np.full(len(r), -np.inf)))
        if parts:
            r = np.concatenate([x[0] for x in parts])
            p = np.concatenate([x[1] for x in parts])
            s = np.concatenate([x[2] for x in parts])
            o = np.lexsort((s, p, r))  # per (row, position) the lowest first: a filter beats a boost
            r, p, s = r[o], p[o], s[o]
            first = np.ones(len(r), bool)
            first[1:] = (r[1:] != r[:-1]) | (p[1:] != p[:-1])
            r, p, s = r[first], p[first], s[first]
        else:
            r = p = np.zeros(0, np.int64)
            s = np.zeros(0)
        per_row = np.bincount(r, minlength=n_rows)
        width = min(len(v), k + int(per_row.max(initial=0)))
        head = order[:width]
        # the k best of the head that are not special
        masked = np.zeros((n_rows, width), bool)
        in_head = rank_of[p] < width
        masked[r[in_head], rank_of[p[in_head]]] = True
        slot = np.cumsum(~masked, axis=1) - 1
        keep = ~masked & (slot < k)
        kr, kc = np.nonzero(keep)
        top_pos = np.full((n_rows, 2 * k), -1, np.int64)
        top_val = np.full((n_rows, 2 * k), -np.inf)
        top_pos[kr, slot[kr, kc]] = head[kc]
        top_val[kr, slot[kr, kc]] = v[head[kc]]
        # the k best special ones
        o = np.lexsort((p, -s, r))
        r, p, s = r[o], p[o], s[o]
        starts = np.concatenate([[0], np.cumsum(per_row)[:-1]])
        within = np.arange(len(r)) - starts[r]
        sel = within < k
        top_pos[r[sel], k + within[sel]] = p[sel]
        top_val[r[sel], k + within[sel]] = s[sel]
        o = np.lexsort((top_pos, -top_val), axis=1)[:, :k]
        pos = np.take_along_axis(top_pos, o, 1)
        val = np.take_along_axis(top_val, o, 1)
        ids = pos if cand is None else np.where(pos >= 0, cand[pos], -1)
        ids = np.where(np.isneginf(val), -1, ids)
        return ids, val.astype(np.float32)

    def _order(self, shared: np.ndarray, cand: np.ndarray | None) -> tuple[np.ndarray, np.ndarray]:
        """Positions by (score desc, position asc) and the inverse permutation; cached for the full catalogue."""
        cached = self._orders.get(id(shared))
        if cand is None and cached is not None and cached[0] is shared:
            return cached[1], cached[2]
        v = shared if cand is None else shared[cand]
        order = np.argsort(-v, kind="stable")
        rank_of = np.empty(len(v), np.int64)
        rank_of[order] = np.arange(len(v))
        if cand is None:  # the cache holds the array itself, so its id cannot be reused meanwhile
            self._orders[id(shared)] = (shared, order, rank_of)
        return order, rank_of

    # ---- pairwise scores -------------------------------------------------------------------------------------
    def score(self, customer_indices: ArrayLike, article_indices: ArrayLike) -> np.ndarray:
        """Scores of (customer, article) pairs, on the same scale `recommend` ranks by (float32 [n])."""
        customers, articles = self._pairs(customer_indices, article_indices)
        out = np.empty(len(customers), np.float64)
        cold = self.is_cold(customers)
        if cold.any():
            out[cold] = np.stack(self._fallback.vectors)[self._fallback.band[customers[cold]], articles[cold]]
        warm = ~cold
        shared = self.shared_scores()
        if shared is not None:
            out[warm] = shared[0][articles[warm]]
            if shared[1] is not None:
                out[warm] += lookup(shared[1], customers[warm], articles[warm])
        elif warm.any():
            out[warm] = self._score_dense(customers[warm], articles[warm])
        if self.filters_bought:
            out[lookup(self.user_items, customers, articles) > 0] = -np.inf
        return out.astype(np.float32)

    def _pairs(self, customer_indices: ArrayLike, article_indices: ArrayLike) -> tuple[np.ndarray, np.ndarray]:
        """The checked (customers, articles) arrays of `score`'s pairs."""
        self._check_fitted()
        customers = self._customers(customer_indices)
        articles = np.atleast_1d(np.asarray(article_indices)).astype(np.int64)
        if articles.shape != customers.shape:
            raise ValueError("customer_indices and article_indices must have the same length")
        if len(articles) and (articles.min() < 0 or articles.max() >= self.n_articles):
            raise ValueError(f"article indices must lie in [0, {self.n_articles})")
        return customers, articles

    def _score_dense(self, customers: np.ndarray, articles: np.ndarray) -> np.ndarray:
        uniq, inv = np.unique(customers, return_inverse=True)
        out = np.empty(len(customers), np.float64)
        order = np.argsort(inv, kind="stable")
        bounds = np.searchsorted(inv[order], np.arange(0, len(uniq) + self.batch_size, self.batch_size))
        for i, (lo, hi) in enumerate(zip(bounds[:-1], bounds[1:])):
            if lo == hi:
                continue
            first = i * self.batch_size
            scores = torch.as_tensor(self.score_all(uniq[first:first + self.batch_size])).float().cpu().numpy()
            idx = order[lo:hi]
            out[idx] = scores[inv[idx] - first, articles[idx]]
        return out

    # ---- argument checks and helpers ----------------------------------------------------------------------
    def _customers(self, customer_indices: ArrayLike) -> np.ndarray:
        if isinstance(customer_indices, torch.Tensor):
            customer_indices = customer_indices.cpu().numpy()
        customers = np.atleast_1d(np.asarray(customer_indices))
        if customers.ndim != 1:
            raise ValueError(f"customer_indices must be an int or a 1-D array, got shape {customers.shape}")
        if len(customers) and not np.issubdtype(customers.dtype, np.integer):
            raise ValueError(f"customer_indices must be integers, got {customers.dtype}")
        customers = customers.astype(np.int64, copy=False)
        if len(customers) and (customers.min() < 0 or customers.max() >= self.n_customers):
            raise ValueError(f"customer indices must lie in [0, {self.n_customers})")
        return customers

    def _candidates(self, candidates: ArrayLike | None, filter_items: ArrayLike | None) -> np.ndarray | None:
        if candidates is not None and filter_items is not None:
            raise ValueError("pass candidates or filter_items, not both")
        if candidates is None and filter_items is None:
            return None
        given = np.unique(np.asarray(candidates if candidates is not None else filter_items)).astype(np.int64)
        if len(given) and (given.min() < 0 or given.max() >= self.n_articles):
            raise ValueError(f"article indices must lie in [0, {self.n_articles})")
        cand = given if candidates is not None else np.setdiff1d(np.arange(self.n_articles), given)
        if not len(cand):
            raise ValueError("no article left to rank: candidates is empty" if candidates is not None
                             else "no article left to rank: filter_items holds every article")
        return cand

    def _check_candidates_left(self, customers: np.ndarray, cand: np.ndarray) -> None:
        r, _ = self._bought(customers, cand)
        left = len(cand) - np.bincount(r, minlength=len(customers))
        if (left == 0).any():
            c = int(customers[np.argmax(left == 0)])
            raise ValueError(f"customer {c} already bought every candidate article; pass other candidates "
                             "or filter_already_bought=False")

    def _bought(self, customers: np.ndarray, cand: np.ndarray | None) -> tuple[np.ndarray, np.ndarray]:
        """(row, position) of each bought article, positions within `cand` when given."""
        r, c, _ = csr_rows(self.user_items, customers)
        if cand is None:
            return r, c
        hit, p = positions_in(cand, c)
        return r[hit], p


def _grouped_by(keys: np.ndarray, n: int) -> tuple[np.ndarray, np.ndarray]:
    """(starts [n + 1], order): the rows with key i are order[starts[i]:starts[i + 1]], in their original order."""
    starts = np.zeros(n + 1, np.int64)
    np.cumsum(np.bincount(keys, minlength=n), out=starts[1:])
    return starts, np.argsort(keys, kind="stable")


def positions_in(sorted_items: np.ndarray, items: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(found, position) of each of `items` in the sorted array `sorted_items` (position only where found)."""
    p = np.searchsorted(sorted_items, items)
    found = (p < len(sorted_items)) & (sorted_items[np.minimum(p, len(sorted_items) - 1)] == items)
    return found, p[found]


def _row_entries(matrix: sp.csr_matrix, rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(row number in `rows`, index into matrix.data) of every stored entry of matrix[rows]."""
    starts, ends = matrix.indptr[rows], matrix.indptr[rows + 1]
    lengths = ends - starts
    r = np.repeat(np.arange(len(rows)), lengths)
    return r, np.arange(lengths.sum()) + np.repeat(starts - np.cumsum(lengths) + lengths, lengths)


def csr_rows(matrix: sp.csr_matrix, rows: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(row number in `rows`, column, value) of every stored entry of matrix[rows], straight from indptr
    (fancy-indexing a csr builds a new matrix per call: too slow for one-request serving)."""
    r, entries = _row_entries(matrix, rows)
    return r, matrix.indices[entries].astype(np.int64), matrix.data[entries]


def stored_at(matrix: sp.csr_matrix, rows: np.ndarray, cols: np.ndarray) -> np.ndarray:
    """Index into matrix.data of each matrix[rows[i], cols[i]], -1 where nothing is stored: one search serves every
    matrix with the same sparsity pattern (indptr and indices)."""
    out = np.full(len(rows), -1, np.int64)
    if not len(rows):
        return out
    uniq, inv = np.unique(rows, return_inverse=True)
    r, entries = _row_entries(matrix, uniq)
    n = matrix.shape[1]
    keys = r * n + matrix.indices[entries]  # sorted: rows ascending, then columns
    q = inv.astype(np.int64) * n + cols
    at = np.minimum(np.searchsorted(keys, q), max(len(keys) - 1, 0))
    found = (keys[at] == q) if len(keys) else np.zeros(len(q), bool)
    out[found] = entries[at[found]]
    return out


def values_at(matrix: sp.csr_matrix, at: np.ndarray) -> np.ndarray:
    """matrix.data at the indices `stored_at` found, 0 where it found none (float64)."""
    out = np.zeros(len(at), np.float64)
    hit = at >= 0
    out[hit] = matrix.data[at[hit]]
    return out


def lookup(matrix: sp.csr_matrix, rows: np.ndarray, cols: np.ndarray) -> np.ndarray:
    """matrix[rows[i], cols[i]] for each i (0 where nothing is stored), without densifying."""
    return values_at(matrix, stored_at(matrix, rows, cols))


PARALLEL_BATCHES = 2
"""Dense batches ranked at once by `recommend` (one thread each) on a machine with at least that many cores."""


def in_parallel(f: Callable[[Any], T], items: list[Any]) -> list[T]:
    """[f(item) for item in items], `PARALLEL_BATCHES` items at a time in threads, each thread's torch work on its
    share of the cores. A batch's ranking is part multi-threaded work (products, sorts, LightGBM) and part
    single-threaded numpy: batches side by side keep every core busy while one batch is in its single-threaded
    part. One item, or one core, runs here in the caller's thread."""
    workers = min(PARALLEL_BATCHES, len(items))
    if workers > 1:  # (os.cpu_count costs a system call: asked only where it matters)
        workers = min(workers, os.cpu_count() or 1)
    if workers < 2:
        return [f(item) for item in items]
    threads = torch.get_num_threads()
    torch.set_num_threads(max(1, threads // workers))  # process-wide: restored below
    try:
        with ThreadPoolExecutor(workers) as pool:
            return list(pool.map(f, items))
    finally:
        torch.set_num_threads(threads)


def top_k(scores: torch.Tensor, k: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Top k columns per row by (score desc, column asc): exact on ties, which plain torch.topk is not.

    NaN counts as -inf. `scores` may be modified in place.
    """
    extra = int(k < scores.shape[1])  # the (k+1)-th value tells whether ties cross the boundary
    vals, cols = torch.topk(scores, k + extra, dim=1, sorted=True)
    if vals.isnan().any():  # topk ranks NaN first: only then pay for a pass over everything
        torch.nan_to_num_(scores, nan=-torch.inf, posinf=torch.inf, neginf=-torch.inf)
        vals, cols = torch.topk(scores, k + extra, dim=1, sorted=True)
    thr = vals[:, k - 1:k]
    ambiguous = (vals[:, k] == vals[:, k - 1]).nonzero().flatten().tolist() if extra else []
    vals, cols = vals[:, :k], cols[:, :k]
    for r in ambiguous:  # more ties at the boundary than slots: keep the smallest columns (rare)
        row = scores[r]
        above = (row > thr[r]).nonzero().flatten()
        tied = (row == thr[r]).nonzero().flatten()[: k - len(above)]
        cols[r] = torch.cat([above, tied])
    vals = scores.gather(1, cols)
    o = torch.argsort(cols, dim=1, stable=True)
    vals, cols = vals.gather(1, o), cols.gather(1, o)
    o = torch.argsort(vals, dim=1, descending=True, stable=True)
    return vals.gather(1, o), cols.gather(1, o)


class SharedScoreRecommender(Recommender):
    """A model whose scores are one vector shared by all customers plus sparse per-customer boosts.

    Subclasses set `self.shared` (float64 [n_articles]) and `self.boosts` (csr or None) in `_fit`.
    """

    shared: np.ndarray
    boosts: sp.csr_matrix | None = None

    def shared_scores(self) -> tuple[np.ndarray, sp.csr_matrix | None]:
        return self.shared, self.boosts

    def score_all(self, customer_indices: np.ndarray) -> np.ndarray:
        customers = np.asarray(customer_indices, np.int64)
        out = np.tile(self.shared, (len(customers), 1))
        if self.boosts is not None:
            r, c, b = csr_rows(self.boosts, customers)
            out[r, c] += b
        return out


MODELS: dict[str, type[Recommender]] = {}


def register(name: str):
    """Class decorator: make a recommender available under `name` (config, CLI, shared tests)."""
    def wrap(cls: type[Recommender]) -> type[Recommender]:
        cls.name = name
        MODELS[name] = cls
        return cls
    return wrap

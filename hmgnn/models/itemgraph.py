"""Two item-to-item peers without learned embeddings: the RP3beta random walk on the purchase graph and EASE, a
closed-form linear item-item model; each picks its setting on the last week before its as-of day."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Any, Callable, Protocol, Sequence

import numpy as np
import scipy.sparse as sp
import torch

from hmgnn.interactions import Interactions, WindowTruth, purchase_matrix
from hmgnn.models.base import Recommender, csr_rows, register, top_k

VAL_K = 12
"""Depth of the validation ranking: MAP@12, as Kaggle scored the competition."""


class RP3Beta:
    """RP3beta (Paudel et al. 2016): the probability that a 3-step walk customer -> article -> buyer -> article
    on the purchase graph ends on an article, divided by the article's degree ** beta so that bestsellers do not
    win every walk. The walks run from the customers asked for (three sparse products), so no article x article
    matrix is ever built.

    Args:
        bought: [n_customers, n_articles] purchases (any positive value counts as one edge).
        beta: popularity penalty (0: the plain walk; 1: each article's reach divided by its buyers).
    """

    def __init__(self, bought: sp.csr_matrix, beta: float) -> None:
        bought = bought.astype(np.float32)  # a copy: the edges are set to 1 below
        bought.data[:] = 1.0
        c_deg = np.asarray(bought.sum(1)).ravel()
        a_deg = np.asarray(bought.sum(0)).ravel()
        self.beta = beta
        self.customer_step = (sp.diags(1 / np.maximum(c_deg, 1)).astype(np.float32) @ bought).tocsr()
        self.article_step = (sp.diags(1 / np.maximum(a_deg, 1)).astype(np.float32) @ bought.T).tocsr()
        self.last_step = (self.customer_step @ sp.diags((1 / np.maximum(a_deg, 1) ** beta).astype(np.float32))).tocsr()

    def dense(self, customers: np.ndarray) -> torch.Tensor:
        """[len(customers), n_articles] walk scores, each row divided by its standard deviation (one scale for
        every customer, which the ranker's features need; the order within a row is the walk's)."""
        buyers = self.customer_step[customers] @ self.article_step  # customer -> article -> buyer
        scores = torch.from_numpy((buyers @ self.last_step).toarray())
        return scores / (scores.std(1, correction=0, keepdim=True) + 1e-12)


class EASE:
    """EASE (Steck, WWW 2019): the item-item weights B that best rebuild the binary purchase matrix X from itself,
    X ~ X B, under an L2 penalty `lam` and with diag(B) = 0 (an article may not explain itself). Closed form:
    P = (X^T X + lam I)^-1, B_ij = -P_ij / P_jj; a customer's scores are X_u B.

    B is a dense articles x articles matrix and P an inverse of one, so only the `max_articles` most bought
    articles enter it (n^2 floats of memory, O(n^3) time). Every other article scores below all of them, ordered by
    its purchases, so each customer's ranking still covers the whole catalogue.

    Args:
        bought: [n_customers, n_articles] purchase counts (the model reads bought / not bought; the counts order
            the articles for the cut).
        lam: L2 penalty on B.
        max_articles: the most bought articles (ties: the smaller index) that B covers; never-bought ones are
            left out.
    """

    def __init__(self, bought: sp.csr_matrix, lam: float, max_articles: int) -> None:
        n_articles = bought.shape[1]
        sales = np.asarray(bought.sum(0), np.float64).ravel()
        order = np.argsort(-sales, kind="stable")
        self.kept = np.sort(order[:min(max_articles, int((sales > 0).sum()))])
        self.cut_sales = float(sales[self.kept].min()) if len(self.kept) else 0.0  # the least bought article in B
        self.lam = lam
        self.position = np.full(n_articles, -1, np.int64)
        self.position[self.kept] = np.arange(len(self.kept))
        self.rest = np.flatnonzero(self.position < 0)
        # in [0, 1): the order of the articles outside B, below every score B gives (see `dense`)
        self.rest_order = torch.from_numpy((sales[self.rest] / (sales.max(initial=0) + 1)).astype(np.float32))
        self.bought = bought
        self.weights = self._weights(bought, lam)

    def _weights(self, bought: sp.csr_matrix, lam: float) -> torch.Tensor:
        if not len(self.kept):
            return torch.zeros(0, 0)
        x = bought[:, self.kept].astype(np.float64)
        x.data[:] = 1.0
        p = inverse_gram(x[np.diff(x.indptr) > 0], lam)  # a customer without a kept article adds nothing
        p.div_(-p.diagonal().clone())  # column j divided by -P_jj
        p.diagonal().zero_()
        return p.float()

    def describe(self) -> str:
        """Where the catalogue was cut, in words."""
        n = len(self.position)
        if len(self.kept) == n:
            return f"all {n} articles"
        return (f"the {len(self.kept)} most bought of {n} articles, down to {self.cut_sales:g} "
                f"purchase{'s' * (self.cut_sales != 1)}")

    def dense(self, customers: np.ndarray) -> torch.Tensor:
        """[len(customers), n_articles] scores: X_u B on the articles B covers; the rest below each row's minimum,
        by their purchases."""
        r, c, _ = csr_rows(self.bought, customers)
        pos = self.position[c]
        inside = pos >= 0
        x = torch.zeros(len(customers), len(self.kept))
        x[torch.from_numpy(r[inside]), torch.from_numpy(pos[inside])] = 1.0
        kept_scores = x @ self.weights
        out = torch.empty(len(customers), len(self.position))
        out[:, torch.from_numpy(self.kept)] = kept_scores
        floor = kept_scores.amin(1, keepdim=True) if len(self.kept) else torch.zeros(len(customers), 1)
        out[:, torch.from_numpy(self.rest)] = floor - 2 + self.rest_order
        return out


def inverse_gram(x: sp.csr_matrix, lam: float) -> torch.Tensor:
    """(X^T X + lam I)^-1, float64 [n, n], of the binary [m, n] matrix X, the cheaper of two exact ways: where fewer
    than half as many customers as articles remain, through the m x m matrix (Woodbury: (X^T X + lam I)^-1 =
    (I - X^T (X X^T + lam I)^-1 X) / lam, about 2 n^2 m operations), else through the n x n one (about n^3).

    Float64: with a small lam the matrix is ill-conditioned enough that float32 reorders a customer's top articles.
    """
    m, n = x.shape
    if 2 * m < n:
        inner = torch.from_numpy((x @ x.T).toarray())
        inner.diagonal().add_(lam)
        dense = torch.from_numpy(x.toarray())
        solved = torch.cholesky_solve(dense, torch.linalg.cholesky(inner))  # (X X^T + lam I)^-1 X
        p = dense.T @ solved
        del dense, solved
        p.neg_()
        p.diagonal().add_(1.0)
        return p.div_(lam)
    gram = torch.from_numpy((x.T @ x).toarray())
    gram.diagonal().add_(lam)
    factor = torch.linalg.cholesky(gram)  # symmetric positive definite
    del gram  # at most two n x n float64 matrices at a time
    return torch.cholesky_inverse(factor)


class Scorer(Protocol):
    """What `choose` validates and a model ranks by: dense scores of every article for some customers."""

    def dense(self, customers: np.ndarray) -> torch.Tensor: ...


@dataclass(frozen=True)
class Choice:
    """The setting a model was built with and where it came from."""

    value: float
    """The model's parameter (RP3beta's beta, EASE's lambda)."""
    drop_bought: bool
    window: tuple[dt.date, dt.date] | None = None
    """First and last day of the held-out window that chose it; None where none could (the defaults)."""
    map_at_12: float | None = None
    customers: int = 0
    """Customers the choice was scored on."""

    def describe(self) -> str:
        if self.window is None:
            return "defaults: no held-out buyer with a history"
        return (f"chosen on {self.window[0]}..{self.window[1]}, MAP@{VAL_K} {self.map_at_12:.4f} "
                f"over {self.customers} customers")


def held_out(interactions: Interactions, as_of: dt.date, days: int, limit: int,
             seed: int) -> tuple[Interactions, WindowTruth] | None:
    """(the purchases before the last `days` days up to `as_of`, the window's buyers that have a history before it,
    a seeded sample of at most `limit` of them); None where the window or its warm buyers are empty."""
    window = interactions.days_before(as_of) < days
    if not window.any() or window.all():
        return None
    before = interactions.subset(~window)
    history = np.bincount(before.customer_index, minlength=interactions.n_customers) > 0
    truth = WindowTruth.of(interactions.subset(window), limit=limit, seed=seed, among=history)
    return (before, truth) if len(truth.customers) else None


def validation_map(scorer: Scorer, bought: sp.csr_matrix, truth: WindowTruth,
                   batch: int) -> tuple[float, float]:
    """MAP@12 of `scorer`'s rankings of every article for the window's buyers: (keeping, dropping) the articles
    each customer bought in `bought`."""
    tops: tuple[list[np.ndarray], list[np.ndarray]] = ([], [])
    for start in range(0, len(truth.customers), batch):
        customers = truth.customers[start:start + batch]
        scores = scorer.dense(customers).float()
        k = min(VAL_K, scores.shape[1])
        tops[0].append(top_k(scores.clone(), k)[1].numpy())
        r, c, _ = csr_rows(bought, customers)
        scores[torch.from_numpy(r), torch.from_numpy(c)] = -torch.inf
        vals, cols = top_k(scores, k)
        tops[1].append(np.where(np.isneginf(vals.numpy()), -1, cols.numpy()))
    return tuple(truth.map_at_k(np.concatenate(t), VAL_K) for t in tops)  # type: ignore[return-value]


def choose(interactions: Interactions, as_of: dt.date, build: Callable[[sp.csr_matrix, float], Scorer],
           grid: Sequence[float], default: float, days: int, limit: int, seed: int, batch: int) -> Choice:
    """The setting (a value of `grid`, keep or drop bought articles) whose model, built by `build` on the purchases
    before the last `days` days, ranks that window's buyers best; ties to (`default`, keep), then grid order.
    (`default`, keep) where no window buyer has a history."""
    split = held_out(interactions, as_of, days, limit, seed)
    if split is None:
        return Choice(default, False)
    before, truth = split
    bought = purchase_matrix(before)
    scored: dict[tuple[float, bool], float] = {}
    for value in dict.fromkeys([default, *grid]):  # the default first: it wins ties
        keep, drop = validation_map(build(bought, value), bought, truth, batch)
        scored[value, False], scored[value, True] = keep, drop
    best = max(scored, key=scored.__getitem__)  # max keeps the first of equal scores
    first = as_of - dt.timedelta(days=days - 1)
    return Choice(best[0], best[1], (first, as_of), scored[best], len(truth.customers))


class ChosenOnValidation(Recommender):
    """A model built from the purchase matrix with one parameter: the parameter, and whether to drop the articles
    each customer bought, are chosen on the last `val_days` days before the as-of day (`choose`); then the model is
    rebuilt on every purchase up to that day. Subclasses set `grid` and `default` and implement `_build`."""

    default: float
    grid: tuple[float, ...]
    scorer: Scorer

    def __init__(self, val_days: int, val_customers: int, seed: int, cold_start: bool, batch_size: int) -> None:
        super().__init__(cold_start=cold_start, batch_size=batch_size)
        if val_days < 1 or val_customers < 1:
            raise ValueError(f"val_days and val_customers must be >= 1, got {val_days} and {val_customers}")
        self.val_days, self.val_customers, self.seed = val_days, val_customers, seed
        self.choice: Choice | None = None

    @classmethod
    def from_config(cls, cfg: Any) -> ChosenOnValidation:
        return cls(seed=cfg.seed) if cfg is not None else cls()  # type: ignore[call-arg]

    def _build(self, bought: sp.csr_matrix, value: float) -> Scorer:
        raise NotImplementedError

    def _fit(self, interactions: Interactions, as_of: dt.date) -> None:
        self.choice = choose(interactions, as_of, self._build, self.grid, self.default, self.val_days,
                             self.val_customers, self.seed, self.batch_size)
        self.filters_bought = self.choice.drop_bought
        self.scorer = self._build(self.user_items, self.choice.value)

    def score_all(self, customer_indices: np.ndarray) -> torch.Tensor:
        return self.scorer.dense(np.asarray(customer_indices, np.int64))


RP3_BETAS = (0.0, 0.25, 0.5, 0.75, 1.0)
RP3_BETA = 0.5


@register("rp3beta")
class RP3BetaRecommender(ChosenOnValidation):
    """The RP3beta walk alone (`RP3Beta`): every article ranked by how many 3-step walks from the customer reach it,
    over its popularity ** beta. Beta, and whether to drop the articles the customer already bought, are chosen on
    the last `val_days` days before the as-of day (a walk built on the purchases before them, scored by MAP@12 on
    that window's buyers with a history), then the walk is rebuilt on every purchase.

    Args:
        betas: the beta grid (default 0, 0.25, 0.5, 0.75, 1).
        default_beta: the beta kept where the window cannot choose, and the winner of ties (default 0.5).
        val_days: days held out to choose (default 7).
        val_customers: at most this many of the window's buyers score the choice (a seeded sample; default 2,000).
        seed: seed of that sample.
        cold_start: give customers without history their age band's bestsellers.
        batch_size: customers per dense chunk (a chunk's walk touches every buyer of their articles).
    """

    scorer: RP3Beta

    def __init__(self, betas: Sequence[float] = RP3_BETAS, default_beta: float = RP3_BETA, val_days: int = 7,
                 val_customers: int = 2000, seed: int = 0, cold_start: bool = True, batch_size: int = 512) -> None:
        super().__init__(val_days, val_customers, seed, cold_start, batch_size)
        self.grid, self.default = tuple(float(b) for b in betas), float(default_beta)

    def _build(self, bought: sp.csr_matrix, value: float) -> RP3Beta:
        return RP3Beta(bought, value)

    def __repr__(self) -> str:
        if self.choice is None:
            return f"RP3BetaRecommender(betas={self.grid}, val_days={self.val_days}, not fitted)"
        return (f"RP3BetaRecommender(beta={self.choice.value:g}, drop_bought={self.choice.drop_bought}, "
                f"{self.choice.describe()})")


EASE_LAMBDAS = (50.0, 200.0, 1000.0)
EASE_LAMBDA = 200.0
EASE_MAX_ARTICLES = 10_000
"""EASE inverts an articles x articles matrix: n^2 x 8 bytes per float64 copy (0.8 GB at 10,000 articles, 89 GB for
the full H&M catalogue of 105,542) and O(n^3) time, which must stay affordable on a laptop's few cores, once per
validated setting."""


@register("ease")
class EASERecommender(ChosenOnValidation):
    """EASE (`EASE`): each customer's scores are their purchases times a closed-form item-item matrix, on the
    `max_articles` most bought articles; the others follow in order of purchases. Lambda, and whether to drop the
    articles the customer already bought, are chosen on the last `val_days` days before the as-of day (EASE built on
    the purchases before them, scored by MAP@12 on that window's buyers with a history), then EASE is rebuilt on
    every purchase.

    Args:
        lambdas: the L2 penalty grid (default 50, 200, 1000).
        default_lambda: the penalty kept where the window cannot choose, and the winner of ties (default 200).
        max_articles: articles in the item-item matrix (default 10,000; memory n^2, time n^3).
        val_days: days held out to choose (default 7).
        val_customers: at most this many of the window's buyers score the choice (a seeded sample; default 2,000).
        seed: seed of that sample.
        cold_start: give customers without history their age band's bestsellers.
        batch_size: customers per dense chunk.
    """

    scorer: EASE

    def __init__(self, lambdas: Sequence[float] = EASE_LAMBDAS, default_lambda: float = EASE_LAMBDA,
                 max_articles: int = EASE_MAX_ARTICLES, val_days: int = 7, val_customers: int = 2000, seed: int = 0,
                 cold_start: bool = True, batch_size: int = 512) -> None:
        super().__init__(val_days, val_customers, seed, cold_start, batch_size)
        if max_articles < 1 or min(lambdas, default=1) <= 0 or default_lambda <= 0:
            raise ValueError("max_articles must be >= 1 and every lambda > 0")
        self.grid, self.default = tuple(float(x) for x in lambdas), float(default_lambda)
        self.max_articles = max_articles

    def _build(self, bought: sp.csr_matrix, value: float) -> EASE:
        return EASE(bought, value, self.max_articles)

    def __repr__(self) -> str:
        if self.choice is None:
            return (f"EASERecommender(lambdas={self.grid}, max_articles={self.max_articles}, "
                    f"val_days={self.val_days}, not fitted)")
        return (f"EASERecommender(lambda={self.choice.value:g}, drop_bought={self.choice.drop_bought}, "
                f"{self.scorer.describe()}, {self.choice.describe()})")

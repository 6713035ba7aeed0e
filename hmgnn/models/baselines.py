"""The baselines every model must beat: last week's bestsellers, the same without re-buys, the customer's own
recent purchases, and time-decayed trending articles; each a full recommender behind the shared interface."""

from __future__ import annotations

import datetime as dt

import numpy as np

from hmgnn.interactions import (MONTH, Interactions, PurchasePairs, article_sales, decayed_sales, purchase_matrix,
                                window_popularity)
from hmgnn.models.base import SharedScoreRecommender, bestseller_reason, lookup, register
from hmgnn.models.reasons import ALL_TIME, BOUGHT, TRENDING, Reason

BASELINES = ("popular", "popular-new", "repurchase", "trending")
"""The one-line models (the best of them by MAP@12 is "the best baseline"), in the order that breaks their ties."""


@register("popular")
class PopularRecommender(SharedScoreRecommender):
    """The same top-k for everybody: the most bought articles of the last `days` days before `as_of`.

    Scores are purchase counts in the window plus an all-time tie-break in [0, 1).

    Args:
        days: length of the popularity window (default 7, as in the Kaggle baselines).
        cold_start: give customers without history their age band's bestsellers.
    """

    def __init__(self, days: int = 7, cold_start: bool = True) -> None:
        super().__init__(cold_start=cold_start)
        if days < 1:
            raise ValueError(f"days must be >= 1, got {days}")
        self.days = days

    def _fit(self, interactions: Interactions, as_of: dt.date) -> None:
        self.shared = window_popularity(interactions, as_of, self.days)
        self.boosts = None
        self.window_sales = article_sales(interactions, as_of, self.days)  # what `_explain` says of an article

    def _explain(self, customer: int, articles: np.ndarray) -> list[Reason]:
        return [bestseller_reason(self.window_sales, a) for a in articles.tolist()]


@register("popular-new")
class PopularNewRecommender(PopularRecommender):
    """`popular` without the articles each customer already bought: the honest bar where nobody re-buys."""

    filters_bought = True


@register("repurchase")
class RepurchaseRecommender(PopularRecommender):
    """The customer's own purchases, most recent first, then by how often bought, then `popular`.

    A bought article scores 1 + (R - days since last bought) * (C + 1) + times bought, plus the popularity
    in [0, 1), where R and C are one more than the largest day gap and count: recency always dominates,
    and every bought article ranks above every article not bought.

    Args:
        days: length of the popularity window that fills the list (default 7).
        cold_start: give customers without history their age band's bestsellers.
    """

    def _fit(self, interactions: Interactions, as_of: dt.date) -> None:
        super()._fit(interactions, as_of)
        self.shared = self.shared / (self.shared.max(initial=0) + 1)  # in [0, 1): below any own purchase
        bought = PurchasePairs(interactions, interactions.days_before(as_of))
        last, n = bought.reduce(np.minimum, bought.days), bought.counts()
        gap, count = int(last.max(initial=0)) + 1, int(n.max(initial=0)) + 1
        self.boosts = bought.matrix(1.0 + (gap - last) * count + n, np.float64)

    def _explain(self, customer: int, articles: np.ndarray) -> list[Reason]:
        # every bought article ranks above every other: bought, else a bestseller
        return [own or popular for own, popular in zip(self._bought_reasons(customer, articles),
                                                       super()._explain(customer, articles))]


TREND_DAYS = MONTH
"""The `trending` baseline's window of recent sales (days), and the ranker's trend feature and candidates'."""
OWN_HALF_LIFE = 30.0
"""The `trending` baseline's half-life (days) of an own purchase's weight, and the ranker's `repurchase_30d`'s."""


@register("trending")
class TrendingRecommender(SharedScoreRecommender):
    """Time-decayed popularity plus the customer's own purchases (the Kaggle "trending products" family).

    score(c, a) = trend(a) + repeat_weight * sum over c's purchases of a of 0.5 ** (days ago / half_life),
    where trend(a) is the sum of 1 / (days ago + 1) over the purchases of `a` in the last `days` days,
    scaled to a maximum of 1 (so an own purchase made on `as_of` weighs as much as the top trending article).

    Args:
        days: window of the trend (default 28).
        half_life_days: half-life of an own purchase's weight (default 30).
        repeat_weight: weight of own purchases against the trend (default 1; 0 gives pure trend).
        cold_start: give customers without history their age band's bestsellers.
    """

    def __init__(self, days: int = TREND_DAYS, half_life_days: float = OWN_HALF_LIFE, repeat_weight: float = 1.0,
                 cold_start: bool = True) -> None:
        super().__init__(cold_start=cold_start)
        if days < 1 or half_life_days <= 0 or repeat_weight < 0:
            raise ValueError("days must be >= 1, half_life_days > 0 and repeat_weight >= 0")
        self.days, self.half_life_days, self.repeat_weight = days, half_life_days, repeat_weight

    def _fit(self, interactions: Interactions, as_of: dt.date) -> None:
        ago = interactions.days_before(as_of)
        trend = decayed_sales(interactions, as_of, self.days)
        trend /= max(trend.max(initial=0), 1e-12)
        # far below any trend: orders the articles nobody bought lately by all-time sales
        all_time = article_sales(interactions)
        self.shared = trend + 1e-9 * all_time / (all_time.max(initial=0) + 1)
        self.trend = trend  # what `_explain` says of an article
        self.boosts = None
        if self.repeat_weight > 0:
            weight = self.repeat_weight * 0.5 ** (ago / self.half_life_days)
            self.boosts = purchase_matrix(interactions, weight)

    def _explain(self, customer: int, articles: np.ndarray) -> list[Reason]:
        """The larger part of the score first: the customer's own purchases of the article (their decayed weight) or
        its trend; an article with neither ranks by the all-time tie-break."""
        own = self._bought_reasons(customer, articles) if self.repeat_weight > 0 else [None] * len(articles)
        weight = lookup(self.boosts, np.full(len(articles), customer), articles) if self.boosts is not None else \
            np.zeros(len(articles))
        out = []
        for a, reason, w in zip(articles.tolist(), own, weight.tolist()):
            trend = Reason(TRENDING, (TRENDING,), detail=str(self.days)) if self.trend[a] > 0 else None
            if reason is None:
                out.append(trend or Reason(ALL_TIME, (TRENDING,)))
            elif trend is None:
                out.append(reason)
            elif w >= self.trend[a]:
                out.append(Reason(BOUGHT, (BOUGHT, TRENDING), times=reason.times, last=reason.last))
            else:
                out.append(Reason(TRENDING, (TRENDING, BOUGHT), detail=str(self.days)))
        return out

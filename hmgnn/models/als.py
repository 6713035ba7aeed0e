"""implicit's alternating least squares behind the recommender interface: the peer a practitioner would pick.

Optional (`pip install "hmgnn[peers]"`); each purchase adds `alpha` to the confidence of its (customer, article) cell.
"""

from __future__ import annotations

import datetime as dt
import os
from typing import Any

import numpy as np

from hmgnn.errors import ConfigError
from hmgnn.interactions import Interactions, purchase_matrix
from hmgnn.models.base import Recommender, register


@register("als")
class ALSRecommender(Recommender):
    """Matrix factorisation of the purchase matrix with implicit's `AlternatingLeastSquares`.

    Args:
        factors: latent dimensions (default 64, as in the peer comparison).
        iterations: ALS sweeps (default 15).
        regularization: L2 penalty (default 0.01, implicit's default).
        alpha: confidence scale of a purchase (default 1.0).
        seed: random state of the factor initialisation.
        drop_bought: never recommend an article the customer already bought (the peer setting that scores best
            where nobody re-buys, as in the published MovieLens figure).
    """

    def __init__(self, factors: int = 64, iterations: int = 15, regularization: float = 0.01, alpha: float = 1.0,
                 seed: int = 42, drop_bought: bool = True, cold_start: bool = True) -> None:
        super().__init__(cold_start=cold_start)
        self.factors, self.iterations, self.regularization = factors, iterations, regularization
        self.alpha, self.seed, self.drop_bought = alpha, seed, drop_bought
        self.filters_bought = drop_bought

    @classmethod
    def from_config(cls, cfg: Any) -> ALSRecommender:
        return cls(seed=cfg.seed) if cfg is not None else cls()

    def _fit(self, interactions: Interactions, as_of: dt.date) -> None:
        import warnings

        from threadpoolctl import threadpool_limits

        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", RuntimeWarning)  # its BLAS-threads advice: followed below
                from implicit.cpu.als import AlternatingLeastSquares
        except ImportError:
            raise ConfigError("model 'als' needs implicit: pip install 'hmgnn[peers]' (or pip install implicit)") from None
        user_items = purchase_matrix(interactions, np.full(len(interactions), 1.0 + self.alpha, np.float32))
        with threadpool_limits(1, "blas"), warnings.catch_warnings():
            # implicit parallelises over rows itself; a threaded BLAS underneath only oversubscribes the cores
            # (its constructor warns about that BLAS setting, which the limit above takes care of)
            warnings.simplefilter("ignore", RuntimeWarning)
            self.model = AlternatingLeastSquares(factors=self.factors, iterations=self.iterations,
                                                 regularization=self.regularization, random_state=self.seed,
                                                 num_threads=os.cpu_count() or 1, calculate_training_loss=False)
            self.model.fit(user_items, show_progress=False)
        self.user_factors = np.asarray(self.model.user_factors, np.float32)
        self.item_factors = np.asarray(self.model.item_factors, np.float32)

    def score_all(self, customer_indices: np.ndarray) -> np.ndarray:
        scores = self.user_factors[np.asarray(customer_indices, np.int64)] @ self.item_factors.T
        if self.drop_bought:
            rows = self.user_items[np.asarray(customer_indices, np.int64)].tocoo()
            scores[rows.row, rows.col] = -np.inf
        return scores

"""The learned ranker: gradient-boosted trees (LightGBM) over (customer, candidate) pair features.

Fit, predict, and a plain-data form (LightGBM's own text model format plus settings) for the checkpoint; nothing
else. LambdaRank optimises the order of each customer's candidates (NDCG), which is what MAP@12 scores; the
binary objective instead gives a purchase probability comparable across customers.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any, Callable

import numpy as np

OBJECTIVES = ("lambdarank", "binary")
SMALL_PREDICT = 4096
"""Rows below which prediction runs on one thread."""


@dataclass
class Ranker:
    """A fitted LightGBM model over the features named in `features`.

    Args:
        model_text: LightGBM's text dump of the booster (`Booster.model_to_string`).
        features: feature names, in column order.
        objective: `lambdarank` or `binary`.
    """

    model_text: str
    features: list[str]
    objective: str

    def __post_init__(self) -> None:
        import lightgbm

        self._booster = lightgbm.Booster(model_str=self.model_text)

    @classmethod
    def fit(cls, x: np.ndarray, labels: np.ndarray, groups: np.ndarray, features: list[str], objective: str = "lambdarank",
            trees: int = 300, learning_rate: float = 0.05, leaves: int = 31, min_rows_in_leaf: int = 50,
            seed: int = 0, threads: int = 0, on_tree: Callable[[], None] | None = None,
            valid: tuple[np.ndarray, np.ndarray, np.ndarray] | None = None, patience: int = 30) -> Ranker:
        """Fit on rows grouped by customer (`groups`: the row count of each consecutive group); `on_tree()` is
        called after each boosting round (progress). With `valid` (x, labels, groups of held-out customers), the
        trees stop once MAP@12 on them has not improved for `patience` rounds, and the model keeps the best
        round's trees (`trees` says how many)."""
        import lightgbm

        if objective not in OBJECTIVES:
            raise ValueError(f"objective must be one of {', '.join(OBJECTIVES)}; got {objective!r}")
        params: dict[str, Any] = {
            "objective": objective, "learning_rate": learning_rate, "num_leaves": leaves,
            "min_data_in_leaf": min_rows_in_leaf, "feature_fraction": 0.8, "bagging_fraction": 0.8,
            "bagging_freq": 1, "lambda_l2": 1.0, "seed": seed, "deterministic": True, "force_row_wise": True,
            "num_threads": threads or os.cpu_count() or 1, "verbosity": -1,
        }
        if objective == "lambdarank":
            params["lambdarank_truncation_level"] = 20
        # the groups go with every objective: `binary` ignores them, but the held-out MAP@12 needs them on both sets
        data = lightgbm.Dataset(x, labels, group=groups, feature_name=features, free_raw_data=True)
        callbacks: list[Any] = [lambda env: on_tree()] if on_tree is not None else []
        sets: list[Any] = []
        if valid is not None:
            # what the held-out customers' order scores, whatever the objective: MAP@12 of their candidates
            params |= {"metric": "map", "eval_at": [12]}
            sets = [lightgbm.Dataset(valid[0], valid[1], group=valid[2], reference=data, feature_name=features)]
            callbacks.append(lightgbm.early_stopping(patience, first_metric_only=True, verbose=False))
        booster = lightgbm.train(params, data, num_boost_round=trees, valid_sets=sets, callbacks=callbacks)
        best = booster.best_iteration if valid is not None and booster.best_iteration > 0 else booster.current_iteration()
        return cls(booster.model_to_string(num_iteration=best), list(features), objective)

    @property
    def trees(self) -> int:
        """Boosting rounds in the model."""
        return self._booster.num_trees()

    def predict(self, x: np.ndarray) -> np.ndarray:
        """The score of each row (larger: ranked higher)."""
        if x.shape[1] != len(self.features):
            raise ValueError(f"the ranker takes {len(self.features)} features, got {x.shape[1]}")
        # a few rows (one request's candidates) predict faster on one thread than through a thread team
        threads = 1 if len(x) < SMALL_PREDICT else os.cpu_count() or 1
        return self._booster.predict(x, num_threads=threads).astype(np.float32)

    def importance(self) -> dict[str, float]:
        """Total gain of each feature (what the trees use most)."""
        gain = self._booster.feature_importance(importance_type="gain")
        return {f: float(g) for f, g in sorted(zip(self.features, gain), key=lambda p: -p[1])}

    def to_dict(self) -> dict[str, Any]:
        return {"model_text": self.model_text, "features": self.features, "objective": self.objective}

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> Ranker:
        return cls(values["model_text"], list(values["features"]), values["objective"])

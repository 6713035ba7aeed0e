"""Why an article is recommended: what put it in a customer's answer (the sources that proposed it and the evidence
behind the strongest), as a `Reason` that every model gives per recommended article and that says itself in words."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Callable

BOUGHT, VARIANT, WALK, GNN, POPULAR, TRENDING = "bought", "variant", "walk", "gnn", "popular", "trending"
STRENGTH = (BOUGHT, VARIANT, WALK, GNN, POPULAR, TRENDING)
"""The candidate sources, strongest evidence first: what the customer did, what is near it, what sells."""

ALL_TIME = "all_time"
"""An article ranked by its all-time sales: the tie-break of the popularity scores, below every article sold lately."""
BEYOND = "beyond"
"""An article that no candidate source proposed: the two-stage model ranks it after its candidates."""
MODEL = "model"
"""A model without candidate sources (ALS, EASE, the GNN alone): its own score ranked the article."""


@dataclass(frozen=True)
class Reason:
    """What ranked one article for one customer.

    Args:
        kind: the evidence named: a source of STRENGTH, or ALL_TIME, BEYOND, MODEL.
        sources: the candidate sources that proposed the article, strongest first (empty for BEYOND and MODEL).
        article: the customer's bought article the evidence refers to (article_index), for variant, walk and gnn.
        times, last: for bought, how often the customer bought it and the day they last did.
        band: for popular, the age band (AGE_BANDS' label) whose bestsellers held it; None for everyone's.
        detail: for BEYOND, what orders the articles past the candidates; for MODEL, the model's name.
    """

    kind: str
    sources: tuple[str, ...] = ()
    article: int | None = None
    times: int = 0
    last: dt.date | None = None
    band: str | None = None
    detail: str = ""

    def why(self, article_id: Callable[[int], str]) -> str:
        """One short sentence in the customer's terms; `article_id` gives an article_index's 10-digit id."""
        if self.kind == BOUGHT:
            if self.times == 1:
                return f"bought once, on {self.last}"
            return f"bought {self.times} times, last on {self.last}"
        if self.kind == VARIANT:
            return f"another colour of {article_id(self.article)} that you bought"
        if self.kind == WALK:
            return f"also bought by customers who bought {article_id(self.article)}, as you did"
        if self.kind == GNN:
            return f"close in the graph model to {article_id(self.article)}, which you bought recently"
        if self.kind == POPULAR:
            return "a bestseller this week" + (f" among customers aged {self.band}" if self.band else "")
        if self.kind == TRENDING:
            return f"selling well over the last {self.detail} days"
        if self.kind == ALL_TIME:
            return "one of the best sellers of all time"
        if self.kind == BEYOND:
            return f"ranked by the model beyond its candidates, by {self.detail}"
        return f"ranked by the {self.detail} model's score"


def strongest(sources: set[str] | tuple[str, ...]) -> tuple[str, ...]:
    """`sources` in STRENGTH order."""
    return tuple(s for s in STRENGTH if s in sources)

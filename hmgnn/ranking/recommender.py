"""The two-stage recommender, the top of the ranking floor: the trained GNN (hmgnn.models.gnn) behind the
recommender interface, `gnn` (GNN retrieval + the learned ranker), `gnn-retrieval` (the GNN's own scores alone),
`ranker-only` and `reference` (the reference recipe). The model registry (hmgnn.registry) imports it on first use.

`fit` runs one message pass over the purchases it is given (no retraining), so the same checkpoint scores the
validation window from history and the test window from history + validation, as a deployed model would.
"""

from __future__ import annotations

import datetime as dt
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np
import scipy.sparse as sp
import torch
from scipy.stats import rankdata

from hmgnn import artifacts, portable
from hmgnn.device import resolve_device
from hmgnn.errors import InputError
from hmgnn.interactions import Interactions
from hmgnn.models.base import Recommender, in_parallel, lookup, position_in_run, positions_in, register
from hmgnn.models.gnn import HeteroSAGE
from hmgnn.models.node_inputs import OwnEdges, build_adjacency, inputs_on, node_inputs
from hmgnn.models.reasons import Reason
from hmgnn.ranking.candidates import (CandidatePairs, GNNScores, RandomWalk, candidate_pairs, candidate_reasons,
                                      non_candidate_score, gnn_pool, trend_percentile)
from hmgnn.ranking.checkpoint import Checkpoint, load as load_checked
from hmgnn.ranking.features import ArticleMeta, Snapshot
from hmgnn.ranking.pairs import feature_matrix, feature_names
from hmgnn.ranking.ranker import Ranker


# One scale for every pair, so scores compare across customers (the binary metrics pool them): a candidate scores
# 0.5 + sigmoid(ranker / 4) / 2, in (0.5, 1); any other article scores in [0, 0.5) by the mean of two percentiles,
# the article's recent sales among all articles and the GNN's score among the customer's scores; every article for
# a customer without history (the fallback's bestsellers) scores in [0, 0.5) by its percentile of sales.
REST_TOP = 0.4995


def load_checkpoint(folder: Path) -> Checkpoint:
    artifacts.require(folder, [artifacts.MODEL_PT], folder.name)
    return load_checked(folder / artifacts.MODEL_PT, folder.name)  # plain data only, every part checked


@torch.no_grad()
def embeddings_as_of(model: HeteroSAGE, recipe: str, time_features: bool, customer_x: torch.Tensor,
                     article_x: torch.Tensor, inter: Interactions, as_of: dt.date, device: torch.device,
                     counts: sp.csr_matrix | None = None,
                     edge_half_life: float = 0.0) -> tuple[torch.Tensor, torch.Tensor]:
    """Customer and article embeddings from one message pass over the purchases up to `as_of` (all of `inter`);
    `counts`, their customer x article purchase counts (`purchase_matrix`) where already built; `edge_half_life`,
    the temporal variant's decay of a purchase's weight (`train.edge_half_life`)."""
    adj = build_adjacency(inter, counts=counts, as_of=as_of, half_life=edge_half_life).to(device)
    inputs = inputs_on(node_inputs(recipe, time_features, customer_x, article_x, inter, as_of), device)
    return model.embeddings(adj, **inputs)


def ranker_scores(model: HeteroSAGE, recipe: str, time_features: bool, customer_x: torch.Tensor,
                  article_x: torch.Tensor, device: torch.device, edge_half_life: float = 0.0):
    """The `gnn_as_of(seen, as_of)` that `ranking.fit.fit_ranker` calls for each label window: the GNN's scores from
    one message pass over `seen` as of that day, the embeddings' dot products alone (no own-edge term), as the
    ranker reads them (`hmgnn train`, and `hmgnn update --refit-ranker` with the trained weights)."""

    def gnn_as_of(seen: Interactions, as_of: dt.date) -> GNNScores:
        c_emb, a_emb = embeddings_as_of(model, recipe, time_features, customer_x, article_x, seen, as_of, device,
                                        edge_half_life=edge_half_life)
        return GNNScores(model, c_emb, a_emb, device, own=None)

    return gnn_as_of


@register("gnn")
class GNNRecommender(Recommender):
    """Two stages: candidates from several sources (the GNN's own top-N among them), ordered by the learned ranker
    over pair features (hmgnn/ranking); customers without a history get the cold-start fallback.

    Args:
        checkpoint: what `hmgnn train` saves in model.pt.
        customer_x, article_x: the static node features of graph/graph.pt.
        device: where the message pass and the GNN's scores run.
    """

    folder = artifacts.MODEL
    fixed_catalogue = True
    """Bound to the customers and articles of the graph it was trained on."""
    ranker_key = "ranker"
    """The checkpoint's field that holds this model's ranker."""
    uses_ranker = True
    """Rank the candidates with that ranker (False: the GNN's scores alone)."""

    def __init__(self, checkpoint: Checkpoint, customer_x: torch.Tensor, article_x: torch.Tensor,
                 device: str = "cpu", cold_start: bool = True, batch_size: int = 512) -> None:
        super().__init__(cold_start=cold_start, batch_size=batch_size)
        self.checkpoint = checkpoint
        self.device = torch.device(device)
        self.model = HeteroSAGE.from_args(checkpoint.model_args)
        self.model.load_state_dict(checkpoint.state_dict)
        self.model.eval().to(self.device)
        self.customer_x, self.article_x = customer_x, article_x
        ranker = getattr(checkpoint, self.ranker_key) if self.uses_ranker else None
        self.ranker = Ranker.from_dict(ranker) if ranker else None
        self.sizes: dict[str, int] = dict(checkpoint.candidate_sizes)
        self._columns: np.ndarray | None = None  # the ranker's columns of `feature_matrix`, where not all of them
        self.gnn_recent_days = checkpoint.gnn_recent_days
        self.rest_mix = float(checkpoint.rest_mix)
        self.meta = ArticleMeta.from_dict(checkpoint.article_meta)
        loss = checkpoint.train_config["loss"]
        # BCE-trained logits are probabilities after a sigmoid; the ranker's and ranking losses' scores only order
        self.score_kind = "logit" if loss == "bce" and self.ranker is None else "rank"

    def __repr__(self) -> str:
        ranker = f"{self.ranker.objective} ranker over {self.sizes}" if self.ranker else "no ranker"
        return f"{type(self).__name__}({self.model!r}, {ranker})"

    @classmethod
    def from_config(cls, cfg: Any) -> GNNRecommender:
        """The checkpoint of <cfg.workdir>/<folder> with graph/'s node features, or, where cfg.workdir is a model
        folder (a copied model/), everything from that folder alone."""
        workdir = Path(cfg.workdir)
        where = artifacts.locate(workdir)
        folder = where.folder(cls.folder)  # a copied model folder itself, or <workdir>/<folder>
        if where.model_folder:
            checkpoint = load_checked(folder / artifacts.MODEL_PT, artifacts.MODEL)
            recipe = "reference" if cls.folder == artifacts.REFERENCE else "gnn"
            if checkpoint.recipe != recipe:
                right = "reference" if checkpoint.recipe == "reference" else "gnn"
                raise InputError(f"{folder / artifacts.MODEL_PT} holds a {checkpoint.recipe!r} model, which "
                                 f"{cls.name!r} cannot load; recommend from it with --model {right} (or auto)")
        else:
            artifacts.check_lineage([workdir / artifacts.TABLES, workdir / artifacts.GRAPH, folder])
            checkpoint = load_checkpoint(folder)
            if not artifacts.same_fingerprint(workdir / artifacts.GRAPH / artifacts.GRAPH_PT,
                                              checkpoint.graph_fingerprint):
                raise InputError(f"{folder / artifacts.MODEL_PT} was trained on another graph.pt; run "
                                 f"`hmgnn train --force` (or `hmgnn train -c ... --set train.recipe={cls.folder}`)")
        # graph.pt's node features, as the model folder holds them
        customer_x, article_x = portable.read_features(folder, checkpoint.files, checkpoint.model_args)
        device = str(resolve_device(cfg.train.device, strict=False))  # a model trained on a GPU ranks on a CPU too
        return cls(checkpoint, customer_x, article_x, device=device, batch_size=cfg.recommend.batch_size)

    def _check_catalogue(self, interactions: Interactions) -> None:
        """The purchases must index the customers and articles the model was trained on."""
        if (interactions.n_customers, interactions.n_articles) != (self.model.num_customers, self.model.num_articles):
            raise InputError(f"the model was trained on {self.model.num_customers} customers x "
                             f"{self.model.num_articles} articles, the data has {interactions.n_customers} x "
                             f"{interactions.n_articles}; retrain with `hmgnn train --force`")

    @torch.no_grad()
    def _fit(self, interactions: Interactions, as_of: dt.date) -> None:
        self._check_catalogue(interactions)
        # the message pass (torch, GIL-free) runs in a thread beside the snapshot's pair statistics (mostly numpy)
        with ThreadPoolExecutor(1) as side:
            embedded = side.submit(embeddings_as_of, self.model, self.checkpoint.recipe,
                                   self.checkpoint.time_features, self.customer_x, self.article_x, interactions,
                                   as_of, self.device, counts=self.user_items,
                                   edge_half_life=float(self.checkpoint.train_config["edge_half_life"]))
            self.snapshot = Snapshot(interactions, as_of, self.meta) if self.ranker is not None else None
            # the GNN alone adds its own-edge term; the ranker reads the embeddings' scores (its own features carry
            # the customer's purchases), as `hmgnn train` fit it
            own = OwnEdges.of(interactions, as_of) if self.model.own_edges and self.ranker is None else None
            self.customer_emb, self.article_emb = embedded.result()
        self.gnn = GNNScores(self.model, self.customer_emb, self.article_emb, self.device, own=own)
        self.walk = None
        if self.ranker is not None:
            self._prepare_ranking()

    def _prepare_ranking(self) -> None:
        """What ranking candidates needs beside the snapshot: the walk, the recent-sales percentiles, and which
        columns of the pair features the ranker takes."""
        self.walk = RandomWalk.if_used(self.snapshot, self.sizes)
        # below every candidate: see _rest; the articles' percentiles of recent sales (ties share one)
        self._trend_pct = torch.from_numpy(trend_percentile(self.snapshot))
        names = feature_names(self.snapshot)
        missing = [f for f in self.ranker.features if f not in names]
        if missing:
            raise InputError(f"the model's ranker uses features this version does not compute ({', '.join(missing)}); "
                             "retrain with `hmgnn train --force`")
        self._columns = None if names == self.ranker.features else np.array([names.index(f) for f in self.ranker.features])

    @property
    def ranks_candidates(self) -> bool:
        return self.ranker is not None

    def keep_candidates(self) -> None:
        """Every customer with a history gets their GNN candidates (the top-N of the GNN's scores, the largest part
        of ranking a few customers) computed now and kept: `recommend` then reads them, the same articles."""
        self._check_fitted()
        n = self.sizes.get("gnn", 0)
        if self.ranker is None or n <= 0:
            return
        self.gnn.keep_top(np.flatnonzero(~self.is_cold(np.arange(self.n_customers))), n,
                          gnn_pool(self.snapshot, self.gnn_recent_days))

    def _fallback_scale(self, sales: np.ndarray) -> np.ndarray:
        """With the ranker, the cold-start fallback's scores are percentiles of its sales (order unchanged), on the
        non-candidates' scale, so a customer without history compares with one whose article is not a candidate."""
        return REST_TOP * rankdata(sales) / len(sales) if self.ranker is not None else sales

    def ranked_pairs(self, customers: np.ndarray) -> tuple[Any, np.ndarray]:
        """(CandidatePairs, ranker score of each) for these customers."""
        pairs = candidate_pairs(self.snapshot, customers, self.sizes, gnn=self.gnn, walk=self.walk,
                                gnn_recent_days=self.gnn_recent_days)
        x = feature_matrix(self.snapshot, pairs)
        return pairs, self.ranker.predict(x if self._columns is None else x[:, self._columns])

    def _rest(self, z: torch.Tensor, articles: torch.Tensor | None = None) -> torch.Tensor:
        """Scores in [0, 0.5) of articles that are not candidates (`non_candidate_score`, with the mix `hmgnn train`
        chose on validation). `z` holds the GNN's z-scores of the pairs when `articles` names their articles, else
        full [customers, n_articles] rows."""
        trend = self._trend_pct.to(z.device)
        return REST_TOP * non_candidate_score(trend[None] if articles is None else trend[articles], z, self.rest_mix)

    def _pair_z(self, customers: np.ndarray, rows: np.ndarray, articles: np.ndarray) -> np.ndarray:
        """The GNN's z-scores of the pairs (customers[rows], articles)."""
        return self.gnn.pairs(customers, rows, articles)[1]

    def _dense_z(self, customers: np.ndarray) -> torch.Tensor:
        """The GNN's z-scores of every article for these customers."""
        scores = self.gnn.dense(customers)
        mean, std = self.gnn.moments(customers, scores)
        return (scores - mean[:, None]) / std[:, None]

    @torch.no_grad()
    def score_all(self, customer_indices: np.ndarray) -> torch.Tensor:
        """Scores of every article on the one scale above: the candidates' ranker scores, then every other article
        below them (see `_rest`; the ranker never learned from non-candidates)."""
        customers = np.asarray(customer_indices, np.int64)
        if self.ranker is None:
            return self.gnn.dense(customers).cpu()
        uniq, inv = np.unique(customers, return_inverse=True)
        if len(uniq) < len(customers):  # a customer asked twice: each candidate list is per customer
            return self.score_all(uniq)[torch.from_numpy(inv.ravel())]
        pairs, scores = self.ranked_pairs(customers)
        out = self._rest(self._dense_z(customers)).cpu()
        row = _rows_of(customers, pairs.customer)
        out[torch.from_numpy(row), torch.from_numpy(pairs.article)] = torch.from_numpy(_candidate_scale(scores))
        return out

    def _rank_dense(self, customers: np.ndarray, k: int, filt: bool | np.ndarray,
                    cand: np.ndarray | None) -> tuple[np.ndarray, np.ndarray]:
        """The top-k of `score_all`'s scores. Where a customer has k candidates left after the filter (the usual
        case), they are the top-k, so only the candidates are sorted; the other customers (and a restricted ranking,
        which keeps the full ranking's scores) go through the dense scores."""
        if self.ranker is None or cand is not None:
            return super()._rank_dense(customers, k, filt, cand)
        return self._rank_candidates(customers, k, filt)[:2]

    def _rank_candidates(self, customers: np.ndarray, k: int,
                         filt: bool | np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """`_rank_dense` with the ranker and no restriction: (ids, scores, the source bits of each slot's candidate;
        0 where the article is no candidate, or the slot is empty)."""
        first = np.zeros(len(customers), bool)
        first[np.unique(customers, return_index=True)[1]] = True
        if not first.all():  # a customer asked twice: rank the first asks, then the others (candidates are per customer)
            filtered = np.broadcast_to(filt, len(customers))
            ids = np.empty((len(customers), k), np.int64)
            vals = np.empty((len(customers), k), np.float32)
            bits = np.empty((len(customers), k), np.uint8)
            for part in (first, ~first):
                ids[part], vals[part], bits[part] = self._rank_candidates(customers[part], k, filtered[part])
            return ids, vals, bits
        pairs, scores = self.ranked_pairs(customers)
        row = pair_row = _rows_of(customers, pairs.customer)
        scores = _candidate_scale(scores)
        filtered = np.broadcast_to(filt, len(customers))
        if filtered.any():
            keep = ~(filtered[row] & (lookup(self.user_items, pairs.customer, pairs.article) > 0))
            row, article, scores = row[keep], pairs.article[keep], scores[keep]
        else:
            article = pairs.article
        ids = np.full((len(customers), k), -1, np.int64)
        vals = np.full((len(customers), k), -np.inf, np.float32)
        order = np.lexsort((article, -scores, row))  # per customer: best first, ties to the smaller article
        row, article, scores = row[order], article[order], scores[order]
        slot = position_in_run(row)
        top = slot < k
        ids[row[top], slot[top]], vals[row[top], slot[top]] = article[top], scores[top]
        short = np.flatnonzero(np.bincount(row, minlength=len(customers)) < k)
        if len(short):
            ids[short], vals[short] = super()._rank_dense(customers[short], k, filtered[short], None)
        return ids, vals, _slot_sources(pairs, pair_row, ids, self.n_articles)

    def recommend_explained(self, customer_indices: Any, k: int = 12, filter_already_bought: bool = False
                            ) -> tuple[np.ndarray, np.ndarray, list]:
        """`Recommender.recommend_explained`, the source bits of each answer carried from its ranking: the same
        top-k as `recommend` (its batches, its code), with the sources that proposed each candidate."""
        if self.ranker is None:
            return super().recommend_explained(customer_indices, k, filter_already_bought)
        self._check_fitted()
        single = np.ndim(customer_indices) == 0
        customers = self._customers(customer_indices)
        if k < 1:
            raise ValueError(f"k must be >= 1, got {k}")
        k = min(k, self.n_articles)
        ids = np.full((len(customers), k), -1, np.int64)
        vals = np.full((len(customers), k), -np.inf, np.float32)
        bits = np.zeros((len(customers), k), np.uint8)
        cold = self.is_cold(customers)
        if cold.any():  # the fallback's bestsellers, as `recommend` ranks them
            ids[cold], vals[cold] = self.recommend(customers[cold], k=k, filter_already_bought=filter_already_bought)
        warm = np.flatnonzero(~cold)
        parts = [warm[start:start + self.batch_size] for start in range(0, len(warm), self.batch_size)]
        filt = filter_already_bought or self.filters_bought
        ranked = in_parallel(lambda rows: self._rank_candidates(customers[rows], k, filt), parts)
        for rows, (i, v, b) in zip(parts, ranked):
            ids[rows], vals[rows], bits[rows] = i, v, b
        reasons = []
        for c, row, b, fallback in zip(customers.tolist(), ids, bits, cold.tolist()):
            keep = row >= 0
            reasons.append(self.explain(c, row[None])[0] if fallback else self._explain(c, row[keep], b[keep]))
        return (ids[0], vals[0], reasons[0]) if single else (ids, vals, reasons)

    def _explain(self, customer: int, articles: np.ndarray, bits: np.ndarray | None = None) -> list[Reason]:
        """Why each of `articles` ranks for a customer with a history: the sources that proposed it (`bits`, else
        the customer's candidates found again) and the evidence of the strongest (`candidate_reasons`)."""
        if self.ranker is None:
            return super()._explain(customer, articles)
        if bits is None:
            pairs = candidate_pairs(self.snapshot, np.array([customer], np.int64), self.sizes, gnn=self.gnn,
                                    walk=self.walk, gnn_recent_days=self.gnn_recent_days)
            bits = _slot_sources(pairs, np.zeros(len(pairs.customer), np.int64), articles[None], self.n_articles)[0]
        beyond = {0.0: "the graph model's score", 1.0: "its recent sales"}.get(
            self.rest_mix, "its recent sales and the graph model's score")
        return candidate_reasons(self.snapshot, customer, articles, bits, self.sizes, self.gnn, self.walk, beyond)

    def score(self, customer_indices: Any, article_indices: Any) -> np.ndarray:
        """Each pair's score as `recommend` ranks it: the ranker's (scaled into (0.5, 1)) for a candidate, and for
        any other article `_rest`'s, in [0, 0.5) (the ranker never learned from non-candidates, so its score of one
        would be an extrapolation; the binary metrics compare pairs across customers)."""
        if self.ranker is None:
            return super().score(customer_indices, article_indices)
        customers, articles = self._pairs(customer_indices, article_indices)
        out = np.empty(len(customers), np.float32)
        cold = self.is_cold(customers)
        if cold.any():  # the fallback's scores, as `recommend` ranks them
            out[cold] = super().score(customers[cold], articles[cold])
        warm = np.flatnonzero(~cold)
        uniq, inv = np.unique(customers[warm], return_inverse=True)
        for s in range(0, len(uniq), self.batch_size):
            at = np.flatnonzero((inv >= s) & (inv < s + self.batch_size))
            pairs, scores = self.ranked_pairs(uniq[s:s + self.batch_size])
            scores = _candidate_scale(scores)
            rows = np.searchsorted(uniq[s:s + self.batch_size], customers[warm[at]])
            z = self._pair_z(uniq[s:s + self.batch_size], rows, articles[warm[at]])
            # not a candidate, unless found below
            out[warm[at]] = self._rest(torch.from_numpy(z), torch.from_numpy(articles[warm[at]])).numpy()
            if len(pairs.customer):
                keys = pairs.customer * self.n_articles + pairs.article
                asked = customers[warm[at]] * self.n_articles + articles[warm[at]]
                found, pos = positions_in(keys, asked)  # keys are sorted: pairs come by customer, then article
                out[warm[at[found]]] = scores[pos]
        return out

    @torch.no_grad()
    def embeddings(self) -> tuple[torch.Tensor, torch.Tensor]:
        """The fitted customer and article embeddings (for serving and similar-article shelves)."""
        self._check_fitted()
        return self.customer_emb.cpu(), self.article_emb.cpu()


def _slot_sources(pairs: CandidatePairs, rows: np.ndarray, ids: np.ndarray, n_articles: int) -> np.ndarray:
    """uint8 [customers, k]: the source bits of the candidate pair (row, ids[row, slot]) of each slot (`rows`: each
    pair's row), 0 where it is no candidate or the slot is empty."""
    keys = rows * n_articles + pairs.article
    order = np.argsort(keys)
    found, at = positions_in(keys[order], (np.arange(len(ids))[:, None] * n_articles + ids).ravel())
    bits = np.zeros(ids.size, np.uint8)
    bits[found] = pairs.sources[order[at]]
    bits[ids.ravel() < 0] = 0  # an empty slot's key (-1) would name the row before's last article
    return bits.reshape(ids.shape)


def _rows_of(customers: np.ndarray, of: np.ndarray) -> np.ndarray:
    """Row of each of `of` in `customers` (distinct values, any order)."""
    order = np.argsort(customers)
    return order[np.searchsorted(customers[order], of)]


@register("gnn-retrieval")
class GNNRetrievalRecommender(GNNRecommender):
    """The GNN alone: every article ranked by the GNN's score (the retrieval stage of `gnn`, without the ranker).
    Each customer's bought articles are scored as `hmgnn train` found best on the validation window
    (`train.RetrievalChoice`): as the embeddings score them, left out, or with the learned own-edge head added."""

    uses_ranker = False

    def __init__(self, checkpoint: Checkpoint, customer_x: torch.Tensor, article_x: torch.Tensor,
                 device: str = "cpu", cold_start: bool = True, batch_size: int = 512) -> None:
        super().__init__(checkpoint, customer_x, article_x, device, cold_start, batch_size)
        self.filters_bought = checkpoint.retrieval_drops_bought
        head = checkpoint.retrieval_head
        self.head = torch.tensor(head, dtype=torch.float32) if head is not None and not self.model.own_edges else None

    @torch.no_grad()
    def _fit(self, interactions: Interactions, as_of: dt.date) -> None:
        super()._fit(interactions, as_of)
        if self.head is not None:  # its weights are in `GNNScores.head_unit`s
            own = OwnEdges.of(interactions, as_of)
            self.gnn = GNNScores(self.model, self.customer_emb, self.article_emb, self.device,
                                 own=own.with_weights(self.head * self.gnn.head_unit(own)))


@register("ranker-only")
class RankerOnlyRecommender(GNNRecommender):
    """The `gnn`'s ranker fit without the GNN, as `hmgnn train` fits it beside the `gnn`'s: the same label windows,
    candidate sources and pair features, but no GNN candidates and no GNN features, and no message pass at all.
    `gnn` / `ranker-only` is what the graph neural network adds to the two-stage model. Articles that are no
    candidate follow by their recent sales alone."""

    ranker_key = "ranker_only"

    def __init__(self, checkpoint: Checkpoint, customer_x: torch.Tensor, article_x: torch.Tensor,
                 device: str = "cpu", cold_start: bool = True, batch_size: int = 512) -> None:
        if not getattr(checkpoint, self.ranker_key):
            raise InputError("this model.pt holds no ranker-only fit (it was trained without a ranker); retrain with "
                             "`hmgnn train --force`")
        super().__init__(checkpoint, customer_x, article_x, device, cold_start, batch_size)
        self.sizes["gnn"] = 0
        self.rest_mix = 1.0

    def _fit(self, interactions: Interactions, as_of: dt.date) -> None:
        self._check_catalogue(interactions)
        self.snapshot = Snapshot(interactions, as_of, self.meta)
        self.gnn = None  # no message pass: nothing of the GNN reaches this model
        self._prepare_ranking()

    def _pair_z(self, customers: np.ndarray, rows: np.ndarray, articles: np.ndarray) -> np.ndarray:
        return np.zeros(len(articles), np.float32)  # weighs nothing: the mix is all recent sales

    def _dense_z(self, customers: np.ndarray) -> torch.Tensor:
        return torch.zeros(len(customers), self.n_articles)

    def keep_candidates(self) -> None:
        """Nothing to keep: the kept candidates are the GNN's."""

    def embeddings(self) -> tuple[torch.Tensor, torch.Tensor]:
        raise InputError("ranker-only has no embeddings (it is the ranker without the GNN); use --model gnn")


@register("reference")
class ReferenceRecommender(GNNRecommender):
    """The reference project's recipe (features-only 2-layer GraphSAGE, BCE, 1:1 uniform negatives)."""

    folder = artifacts.REFERENCE
    uses_ranker = False  # the reference recipe trains no ranker


def _candidate_scale(scores: np.ndarray) -> np.ndarray:
    """Ranker scores mapped into (0.5, 1), order kept: above every non-candidate and cold-start score. The /4
    keeps the logistic far from saturating (where float32 would tie distinct scores)."""
    return (0.5 + 0.5 / (1.0 + np.exp(-np.asarray(scores, np.float64) / 4))).astype(np.float32)


"""`hmgnn train`: fit the heterogeneous GraphSAGE recommender on history and select it on the validation window.

Writes <workdir>/model/ (the `reference` recipe: <workdir>/reference/): model.pt, train_log.csv, train_curve.png.
"""

from __future__ import annotations

import copy
import datetime as dt
import hashlib
import json
import math
import os
import shutil
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl
import torch

from hmgnn import artifacts, distributed
from hmgnn.config import Config, TrainConfig
from hmgnn.console import console, info, progress
from hmgnn.errors import ConfigError, InputError
from hmgnn.features import ARTICLE_TIME_FEATURES, CUSTOMER_TIME_FEATURES, time_features
from hmgnn.metrics import average_precision_curve, hits_matrix, map_at_k_curve
from hmgnn.models.base import Interactions, csr_rows, positions_in, window_popularity
from hmgnn.models.gnn import HeteroSAGERecommender
from hmgnn.models.sparse import Adjacency

REFERENCE = "reference"
STATE_PT = "state.pt"
CURVE_PNG = "train_curve.png"
# Blend grid searched on the validation window: weight of log popularity, and what to do with articles the
# customer already bought (None drops them; a number adds that many z-units times their decayed count).
# The repurchase signal sums 0.5 ** (days ago / half-life) over a customer's purchases of the article; 0 means
# no decay (a plain count): measured at seed scale, undecayed counts with a large weight ("own purchases first")
# beat a 14-day decay, while real fashion data may prefer the decay, so validation picks.
POPULARITY_WEIGHTS = (0.0, 0.25, 0.5, 1.0, 2.0, 4.0, 8.0)
REPURCHASE_WEIGHTS = (None, 0.0, 0.5, 2.0, 8.0, 32.0)
REPURCHASE_HALF_LIVES = (14.0, 0.0)
# Weight of log1p(purchases of the article's product): other colours of a product the customer bought. Real H&M
# histories re-buy a product_code three times as often as the article itself (6.4% vs 2.3% of recent purchases);
# measured at seed scale this term lifts the blend's validation MAP@12 from 0.0081 to 0.0087. Searched after the
# grid above, with the popularity weight searched again beside it.
VARIANT_WEIGHTS = (0.0, 0.5, 1.0, 2.0, 4.0, 8.0)
# The blend is fit per segment of customers by the number of purchases they have: own purchases first helps a
# customer with a few purchases and buries the bestsellers under two years of old purchases for a heavy buyer
# (seed scale, validation: popularity alone scores 0.0077 for customers with 100+ purchases, with repurchase
# first 0.0014). A segment with fewer validation buyers than MIN_SEGMENT_CUSTOMERS uses the overall best.
HISTORY_SEGMENTS = (0, 1, 5, 20, 100)  # lower bounds of purchases seen
# The random-walk term (train.walk): RP3beta (Paudel et al. 2016), the probability of a 3-step walk customer ->
# article -> buyer -> article on the purchase graph, each article's arrival divided by its degree^WALK_BETA so the
# bestsellers do not win every walk; each article keeps its WALK_NEIGHBOURS strongest co-purchased articles.
# Beta 0.5: the best validation MAP@12 of the blend on MovieLens (3 windows x 2 seeds: 0.0928 vs 0.0821 with 0.3).
WALK_WEIGHTS = (0.0, 0.25, 0.5, 1.0, 2.0, 4.0)
WALK_BETA = 0.5
WALK_NEIGHBOURS = 200
MIN_SEGMENT_CUSTOMERS = 200


def model_dir(cfg: Config) -> Path:
    """Where `hmgnn train` writes: model/ for the hybrid GNN, reference/ for the reference recipe."""
    return Path(cfg.workdir) / (REFERENCE if cfg.train.recipe == "reference" else artifacts.MODEL)


def resolve_device(name: str) -> torch.device:
    if name == "cuda" and not torch.cuda.is_available():
        raise ConfigError("train.device = 'cuda' but no CUDA device is available; use 'auto' or 'cpu'")
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(name)


@dataclass
class TrainingData:
    """Everything a training run reads: static node features, history and validation purchases, windows."""

    customer_x: torch.Tensor
    article_x: torch.Tensor
    feature_names: dict[str, list[str]]
    history: Interactions
    validation: Interactions
    history_end: dt.date
    val_end: dt.date
    article_product: np.ndarray  # int32 [n_articles] dense product index (for the blend's variant term)


def load_graph_features(graph_dir: Path) -> tuple[torch.Tensor, torch.Tensor, dict[str, list[str]]]:
    data = torch.load(graph_dir / artifacts.GRAPH_PT, weights_only=False)
    names = json.loads((graph_dir / artifacts.FEATURE_NAMES).read_text())
    return data["customer"].x.float(), data["article"].x.float(), names


def read_interactions(path: Path, n_customers: int, n_articles: int) -> Interactions:
    frame = pl.read_parquet(path, columns=["customer_index", "article_index", "t_dat"])
    return Interactions.from_frame(frame, n_customers, n_articles)


def article_products(tables_dir: Path) -> np.ndarray:
    """int32 [n_articles]: a dense index of each article's product_code (colour variants share one)."""
    codes = pl.read_parquet(tables_dir / artifacts.ARTICLES_PARQUET, columns=["product_code"])["product_code"]
    return np.unique(codes.to_numpy(), return_inverse=True)[1].astype(np.int32)


def load_training_data(graph_dir: Path, split_dir: Path, tables_dir: Path) -> TrainingData:
    customer_x, article_x, names = load_graph_features(graph_dir)
    nc, na = customer_x.shape[0], article_x.shape[0]
    windows = (artifacts.read_manifest(split_dir) or {}).get("windows")
    if not windows:
        raise InputError(f"{split_dir}/manifest.json has no 'windows'; run `hmgnn sample` again (with --force)")
    history = read_interactions(split_dir / artifacts.HISTORY_PARQUET, nc, na)
    validation = read_interactions(split_dir / artifacts.VALIDATION_PARQUET, nc, na)
    if len(history) == 0 or len(validation) == 0:
        raise InputError(f"{split_dir}: the history or validation window is empty; move sample.cutoff or "
                         "lengthen sample.val_days")
    products = article_products(tables_dir)
    if len(products) != na:
        raise InputError(f"{tables_dir / artifacts.ARTICLES_PARQUET} has {len(products)} articles, "
                         f"{graph_dir / artifacts.GRAPH_PT} {na}; run `hmgnn build-graph --force`")
    return TrainingData(customer_x, article_x, names, history, validation,
                        dt.date.fromisoformat(windows["history_end"]), dt.date.fromisoformat(windows["val_end"]),
                        products)


def build_adjacency(inter: Interactions, mask: np.ndarray | None = None) -> Adjacency:
    c, a = inter.customer_index, inter.article_index
    if mask is not None:
        c, a = c[mask], a[mask]
    edge_index = torch.from_numpy(np.stack([c, a]).astype(np.int64))
    return Adjacency.from_edge_index(edge_index, inter.n_customers, inter.n_articles)


def node_inputs(recipe: str, with_time: bool, customer_x: torch.Tensor, article_x: torch.Tensor,
                inter: Interactions, as_of: dt.date, mask: np.ndarray | None = None) -> dict[str, torch.Tensor | None]:
    """The model's node inputs as of a day: static features, plus time features from the visible purchases."""
    if recipe == "reference":
        # the reference project row-normalises its one-hot features (PyG NormalizeFeatures)
        customer_x, article_x = _row_normalise(customer_x), _row_normalise(article_x)
    inputs: dict[str, torch.Tensor | None] = {"customer_x": customer_x, "article_x": article_x,
                                              "customer_extra": None, "article_extra": None}
    if with_time:
        visible = inter if mask is None else _subset(inter, mask)
        inputs["customer_extra"], inputs["article_extra"] = time_features(visible, as_of)
    return inputs


def _row_normalise(x: torch.Tensor) -> torch.Tensor:
    x = x.clamp(min=0)
    return x / x.sum(dim=1, keepdim=True).clamp(min=1e-12)


def _subset(inter: Interactions, mask: np.ndarray) -> Interactions:
    return Interactions(inter.customer_index[mask], inter.article_index[mask], inter.t_dat[mask],
                        inter.n_customers, inter.n_articles, inter.customer_age)


def build_model(tc: TrainConfig, data: TrainingData) -> HeteroSAGERecommender:
    extra_c = len(CUSTOMER_TIME_FEATURES) if tc.time_features else 0
    extra_a = len(ARTICLE_TIME_FEATURES) if tc.time_features else 0
    return HeteroSAGERecommender(
        num_customers=data.customer_x.shape[0], num_articles=data.article_x.shape[0],
        customer_channels=data.customer_x.shape[1], article_channels=data.article_x.shape[1],
        customer_extra_channels=extra_c, article_extra_channels=extra_a, hidden_channels=tc.hidden,
        num_layers=tc.layers, id_embeddings=tc.id_embeddings, dropout=tc.dropout, decoder=tc.decoder)


def _to(inputs: dict[str, torch.Tensor | None], device: torch.device) -> dict[str, torch.Tensor | None]:
    return {k: (v.to(device) if v is not None else None) for k, v in inputs.items()}


@dataclass
class WindowTruth:
    """The customers who bought in a window and their purchases (for MAP@12 as Kaggle scored it)."""

    customers: np.ndarray
    bought_customers: np.ndarray
    bought_articles: np.ndarray

    @classmethod
    def of(cls, inter: Interactions, limit: int = 0, seed: int = 0, among: np.ndarray | None = None) -> WindowTruth:
        """`among`: a boolean per customer; only those customers are kept (before the `limit` sample)."""
        customers = np.unique(inter.customer_index)
        if among is not None:
            customers = customers[among[customers]]
        if limit and len(customers) > limit:
            # a seeded sample keeps each epoch's validation cheap at full scale
            customers = np.sort(np.random.default_rng(seed).choice(customers, limit, replace=False))
        keep = np.isin(inter.customer_index, customers)
        return cls(customers, inter.customer_index[keep], inter.article_index[keep])

    def map_at_k(self, top: np.ndarray, k: int = 12) -> float:
        hits, n_relevant = hits_matrix(top, self.customers, self.bought_customers, self.bought_articles)
        return float(map_at_k_curve(hits[:, :k], n_relevant)[-1])

    def average_precision(self, top: np.ndarray, k: int = 12) -> np.ndarray:
        """AP@k of each customer (their mean is map_at_k): lets a blend be chosen per segment of customers."""
        hits, n_relevant = hits_matrix(top, self.customers, self.bought_customers, self.bought_articles)
        return average_precision_curve(hits[:, :k], n_relevant)[:, -1]  # every customer bought in the window


class Trainer:
    """One training run: epochs of full-batch message passing, validation MAP@12, checkpoints, resume."""

    def __init__(self, tc: TrainConfig, seed: int, data: TrainingData, device: torch.device) -> None:
        self.tc, self.seed, self.data, self.device = tc, seed, data, device
        torch.manual_seed(seed)
        self.model = build_model(tc, data).to(device)
        self.optimizer = torch.optim.Adam(self.model.parameters(), lr=tc.lr, weight_decay=tc.weight_decay)
        self.generator = torch.Generator().manual_seed(seed)
        self.epoch = 0
        self.best_map = -1.0
        self.best_epoch = 0
        self.best_state: dict[str, torch.Tensor] | None = None
        self.bad_epochs = 0
        self.timed_out = False
        self.last_steps = 0
        self.log: list[dict[str, Any]] = []
        self.dist = distributed.current()  # rank 0 of 1 unless launched by torchrun
        self._prepare()

    # ---- data for every epoch ---------------------------------------------------------------------------
    def _prepare(self) -> None:
        tc, hist = self.tc, self.data.history
        days = hist.days_before(self.data.history_end)
        if tc.supervision == "recent":
            # no leakage inside training: targets are the last target_days, predicted from the purchases before
            target = days < tc.target_days
            if not target.any() or target.all():
                raise InputError(f"train.target_days = {tc.target_days} leaves no targets or no message-passing "
                                 "edges in the history window; change train.target_days")
            as_of = self.data.history_end - dt.timedelta(days=tc.target_days)
            self._fixed = self._epoch_graph(~target, target, as_of)
        counts = np.bincount(hist.article_index, minlength=hist.n_articles).astype(np.float64)
        self.popularity = torch.from_numpy(counts ** 0.75 + 1e-3)
        # validation: message passing over all of history, scored on the validation window's buyers
        self.val_adj = build_adjacency(hist).to(self.device)
        self.val_inputs = _to(node_inputs(tc.recipe, tc.time_features, self.data.customer_x, self.data.article_x,
                                          hist, self.data.history_end), self.device)
        # only customers with a history: the others get the cold-start fallback, never the GNN or the blend, so
        # their GNN scores (an untrained ID embedding, no neighbours) would only add noise to early stopping
        # and pull the blend towards popularity (MovieLens: 40% of a validation window's customers are new)
        warm = np.bincount(hist.customer_index, minlength=hist.n_customers) > 0
        self.val_truth = WindowTruth.of(self.data.validation, tc.val_customers, self.seed, among=warm)
        if not len(self.val_truth.customers):
            raise InputError("no customer of the validation window bought in the history window, so there is "
                             "nothing to validate the GNN on; move sample.cutoff later or widen sample.val_days")

    def _epoch_graph(self, mp_mask: np.ndarray, target_mask: np.ndarray, as_of: dt.date) -> dict[str, Any]:
        hist = self.data.history
        adj = build_adjacency(hist, mp_mask).to(self.device)
        inputs = _to(node_inputs(self.tc.recipe, self.tc.time_features, self.data.customer_x,
                                 self.data.article_x, hist, as_of, mp_mask), self.device)
        c = torch.from_numpy(hist.customer_index[target_mask].astype(np.int64))
        a = torch.from_numpy(hist.article_index[target_mask].astype(np.int64))
        if self.tc.recency_half_life > 0:
            age = hist.days_before(self.data.history_end)[target_mask]
            w = torch.from_numpy(np.exp2(-age / self.tc.recency_half_life).astype(np.float32))
        else:
            w = None
        return {"adj": adj, "inputs": inputs, "c": c, "a": a, "w": w}

    def _graph_for_epoch(self) -> dict[str, Any]:
        if self.tc.supervision == "recent":
            return self._fixed
        # disjoint: a fresh random split of history each epoch, drawn from the run's generator (resumable)
        n = len(self.data.history)
        target = (torch.rand(n, generator=self.generator) < self.tc.disjoint_ratio).numpy()
        return self._epoch_graph(~target, target, self.data.history_end)

    # ---- one epoch -----------------------------------------------------------------------------------------
    def _negatives(self, count: int) -> torch.Tensor:
        n_articles = self.data.article_x.shape[0]
        if self.tc.negatives == "popularity":
            return torch.multinomial(self.popularity, count, replacement=True, generator=self.generator)
        return torch.randint(n_articles, (count,), generator=self.generator)

    def train_epoch(self, on_step=None, out_of_time=None) -> float:
        """One pass over the supervision edges; the mean loss. `out_of_time()` (checked after each step, the
        ranks agreeing under torchrun) ends the epoch early; `self.last_steps` says how many steps ran."""
        tc, model = self.tc, self.model
        g = self._graph_for_epoch()
        model.train()
        order = torch.randperm(g["c"].numel(), generator=self.generator)
        total, steps = 0.0, 0
        for start in range(0, order.numel(), tc.batch_size):
            idx = order[start:start + tc.batch_size]
            c, a = g["c"][idx].to(self.device), g["a"][idx].to(self.device)
            w = g["w"][idx].to(self.device) if g["w"] is not None else None
            self.optimizer.zero_grad(set_to_none=True)
            c_emb, a_emb = model.embeddings(g["adj"], **g["inputs"])
            # under torchrun each rank scores its block of the batch (one process: all of it); see distributed.py
            n, mine, batch_a, batch_w = c.numel(), self.dist.shard(c.numel()), a, w
            c, a, w = c[mine], a[mine], (w[mine] if w is not None else None)
            if tc.loss == "softmax":
                log_pop = torch.log(self.popularity / self.popularity.sum()).float().to(self.device)
                loss = model.sampled_softmax_loss(c_emb, a_emb, c, a, log_pop, w, num_negatives=min(8192, n),
                                                  negative_index=batch_a)
            else:
                neg = self._negatives(n * tc.num_negatives).to(self.device).view(n, tc.num_negatives)[mine]
                pos = model.score(c_emb, a_emb, c, a)
                negs = model.decode(c_emb[c].unsqueeze(1), a_emb[neg])
                if tc.loss == "bpr":
                    loss = model.bpr_loss(pos, negs, w)
                else:
                    loss = model.bce_loss(pos, negs.reshape(-1), w)
            loss = self.dist.share(loss, mine, n, batch_w, tc.loss, tc.num_negatives)
            loss.backward()
            self.dist.all_reduce_gradients(model)
            self.optimizer.step()
            total += float(loss.detach())
            steps += 1
            if on_step:
                on_step()
            if out_of_time is not None and self.dist.sum(float(out_of_time())) > 0:
                self.timed_out = True
                break
        self.last_steps = steps
        return self.dist.sum(total) / max(steps, 1)

    @torch.no_grad()
    def embeddings_for_validation(self) -> tuple[torch.Tensor, torch.Tensor]:
        self.model.eval()
        return self.model.embeddings(self.val_adj, **self.val_inputs)

    @torch.no_grad()
    def validate(self) -> float:
        """MAP@12 of the raw GNN scores on the validation window (full ranking over all articles)."""
        c_emb, a_emb = self.embeddings_for_validation()
        return validation_map(self.model, c_emb, a_emb, self.val_truth)

    def steps_per_epoch(self) -> int:
        n = self._fixed["c"].numel() if self.tc.supervision == "recent" else int(len(self.data.history) * self.tc.disjoint_ratio)
        return max(1, math.ceil(n / self.tc.batch_size))

    # ---- checkpoints -----------------------------------------------------------------------------------------
    def state(self, key: str) -> dict[str, Any]:
        return {"key": key, "epoch": self.epoch, "model": self.model.state_dict(),
                "optimizer": self.optimizer.state_dict(), "generator": self.generator.get_state(),
                "torch_rng": torch.get_rng_state(), "best_map": self.best_map, "best_epoch": self.best_epoch,
                "best_state": self.best_state, "bad_epochs": self.bad_epochs, "log": self.log}

    def load_state(self, state: dict[str, Any]) -> None:
        self.epoch = state["epoch"]
        self.model.load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.generator.set_state(state["generator"])
        torch.set_rng_state(state["torch_rng"])
        self.best_map, self.best_epoch = state["best_map"], state["best_epoch"]
        self.best_state, self.bad_epochs, self.log = state["best_state"], state["bad_epochs"], state["log"]

    def finished(self) -> bool:
        return self.epoch >= self.tc.epochs or self.bad_epochs >= self.tc.patience or self.timed_out


@torch.no_grad()
def validation_map(model: HeteroSAGERecommender, c_emb: torch.Tensor, a_emb: torch.Tensor,
                   truth: WindowTruth, k: int = 12, chunk: int = 1024) -> float:
    customers = truth.customers
    tops = []
    for s in range(0, len(customers), chunk):
        idx = torch.from_numpy(customers[s:s + chunk].astype(np.int64)).to(c_emb.device)
        scores = model.score_all(c_emb, a_emb, idx)
        tops.append(torch.topk(scores, min(k, scores.shape[1]), dim=1).indices.cpu().numpy())
    top = np.concatenate(tops) if tops else np.zeros((0, k), np.int64)
    return truth.map_at_k(top, k)


# ---- the blend ----------------------------------------------------------------------------------------------
def log_popularity(inter: Interactions, as_of: dt.date) -> np.ndarray:
    """log1p of each article's sales in the last week up to `as_of` (the blend's popularity term)."""
    return np.log1p(window_popularity(inter, as_of, 7)).astype(np.float32)


def repurchase_matrix(inter: Interactions, as_of: dt.date, half_life: float) -> Any:
    """[n_customers, n_articles] sum of 0.5 ** (days ago / half_life) over each customer's purchases of an
    article, as of a day; half_life 0 gives plain counts."""
    import scipy.sparse as sp

    days = inter.days_before(as_of)
    weight = (np.exp2(-days / half_life) if half_life > 0 else np.ones(len(days))).astype(np.float32)
    rep = sp.csr_matrix((weight, (inter.customer_index, inter.article_index)),
                        shape=(inter.n_customers, inter.n_articles))
    rep.sum_duplicates()
    return rep


def variant_matrix(inter: Interactions, article_product: np.ndarray) -> Any:
    """[n_customers, n_articles] log1p of a customer's purchases of each article's product: every colour of a
    product the customer bought (the bought colour included)."""
    import scipy.sparse as sp

    n_products = int(article_product.max(initial=-1)) + 1
    bought = sp.csr_matrix((np.ones(len(inter), np.float32),
                            (inter.customer_index, article_product[inter.article_index])),
                           shape=(inter.n_customers, n_products))
    members = sp.csr_matrix((np.ones(len(article_product), np.float32),
                             (article_product, np.arange(len(article_product)))),
                            shape=(n_products, len(article_product)))
    out = (bought @ members).tocsr()
    out.sort_indices()  # a product's column order is arbitrary; lookups (models.base._lookup) need it sorted
    out.data = np.log1p(out.data)
    return out


def zscore(gnn: torch.Tensor, inplace: bool = False) -> torch.Tensor:
    """Per-customer z-scores of GNN scores, so one blend weight fits customers with sharp and flat rankings;
    `inplace` overwrites `gnn` (a serving request saves two passes over the articles)."""
    mean, std = gnn.mean(dim=1, keepdim=True), gnn.std(dim=1, keepdim=True)
    if inplace:
        return gnn.sub_(mean).div_(std + 1e-6)
    return (gnn - mean) / (std + 1e-6)


def apply_blend(base: torch.Tensor, entries: tuple[np.ndarray, np.ndarray, np.ndarray],
                weight: float | None) -> torch.Tensor:
    """Add weight x the entries' values to `base` in place; weight None sets those entries to -inf (drops them)."""
    rows, cols, values = entries
    r = torch.from_numpy(rows.astype(np.int64)).to(base.device)
    c = torch.from_numpy(cols.astype(np.int64)).to(base.device)
    if weight is None:
        base[r, c] = float("-inf")
    else:
        base[r, c] += weight * torch.from_numpy(values).to(base.device)
    return base


class WalkTerm:
    """The random-walk (RP3beta) score of each customer's articles: a graph signal without learned weights, which
    the blend can weigh beside the GNN (train.walk). Per customer, scores are divided by their standard deviation
    over all articles (the GNN's z-score scale); only the articles a walk reaches are stored.

    Args:
        inter: the purchases the walks run over.
        beta: popularity penalty (an article's arrival probability divided by its degree ** beta).
        neighbours: co-purchased articles kept per article (the strongest).
    """

    def __init__(self, inter: Interactions, beta: float = WALK_BETA, neighbours: int = WALK_NEIGHBOURS,
                 chunk: int = 4096) -> None:
        import scipy.sparse as sp

        bought = sp.csr_matrix((np.ones(len(inter), np.float32), (inter.customer_index, inter.article_index)),
                               shape=(inter.n_customers, inter.n_articles))
        bought.sum_duplicates()
        bought.data[:] = 1.0
        c_deg = np.asarray(bought.sum(1)).ravel()
        a_deg = np.asarray(bought.sum(0)).ravel()
        self.customer_step = (sp.diags(1 / np.maximum(c_deg, 1)).astype(np.float32) @ bought).tocsr()
        article_step = (sp.diags(1 / np.maximum(a_deg, 1)).astype(np.float32) @ bought.T).tocsr()
        penalty = sp.diags((1 / np.maximum(a_deg, 1) ** beta).astype(np.float32))
        blocks = []
        for start in range(0, inter.n_articles, chunk):  # article -> buyer -> article, pruned block by block
            block = (article_step[start:start + chunk] @ self.customer_step @ penalty).tocsr()
            blocks.append(_top_per_row(block, neighbours))
        self.article_step = sp.vstack(blocks, format="csr") if blocks else sp.csr_matrix((0, inter.n_articles))
        self.n_articles = inter.n_articles

    def entries(self, customers: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(row number in `customers`, article, score / the row's std over all articles) of the reached articles."""
        scores = (self.customer_step[customers] @ self.article_step).tocsr()
        r, c, v = csr_rows(scores, np.arange(len(customers)))
        n = self.n_articles
        total = np.bincount(r, weights=v, minlength=len(customers))
        squares = np.bincount(r, weights=v.astype(np.float64) ** 2, minlength=len(customers))
        std = np.sqrt(np.maximum(squares / n - (total / n) ** 2, 0)) + 1e-12
        return r, c, (v / std[r]).astype(np.float32)


def _top_per_row(block: Any, k: int) -> Any:
    """The `k` largest stored entries of each row of a csr block (ties: the smaller column)."""
    import scipy.sparse as sp

    lengths = np.diff(block.indptr)
    if lengths.max(initial=0) <= k:
        return block
    rows = np.repeat(np.arange(block.shape[0]), lengths)
    order = np.lexsort((block.indices, -block.data, rows))
    rank = np.arange(len(order)) - np.repeat(block.indptr[:-1], lengths)
    keep = order[rank < k]
    keep.sort()
    indptr = np.concatenate([[0], np.cumsum(np.minimum(lengths, k))])
    return sp.csr_matrix((block.data[keep], block.indices[keep], indptr), shape=block.shape)


@dataclass
class BlendSignals:
    """The blend's inputs besides the GNN, as of a day: last-week log popularity, the repurchase signal per
    half-life, the variant term, and each customer's number of purchases (which picks their segment)."""

    log_pop: np.ndarray
    repurchase: dict[float, Any]
    variant: Any | None
    purchases: np.ndarray
    walk: WalkTerm | None = None

    @classmethod
    def of(cls, inter: Interactions, as_of: dt.date, half_lives: Any,
           article_product: np.ndarray | None = None, walk: bool = False) -> BlendSignals:
        return cls(log_popularity(inter, as_of), {h: repurchase_matrix(inter, as_of, h) for h in set(half_lives)},
                   variant_matrix(inter, article_product) if article_product is not None else None,
                   np.bincount(inter.customer_index, minlength=inter.n_customers),
                   WalkTerm(inter) if walk else None)


def blend_segments(blend: dict[str, Any]) -> list[dict[str, Any]]:
    """The per-segment settings of a fitted blend (a blend from before segments: one segment for everybody)."""
    return blend.get("segments") or [{"min_purchases": 0, "repurchase_half_life": 14.0, "variant_weight": 0.0,
                                      **blend}]


def segment_index(segments: list[dict[str, Any]], purchases: np.ndarray) -> np.ndarray:
    """Which of the blend's segments (by purchases seen) each customer falls in."""
    return np.searchsorted([g["min_purchases"] for g in segments], purchases, side="right") - 1


def blended_scores(gnn: torch.Tensor, customers: np.ndarray, signals: BlendSignals,
                   blend: dict[str, Any]) -> torch.Tensor:
    """z-scored GNN scores + popularity_weight x log popularity + variant_weight x the variant term, bought
    articles dropped (repurchase_weight None) or boosted by repurchase_weight x their repurchase signal; the
    weights are those of each customer's segment. Works in place on `gnn` (a fresh score matrix): serving
    scores one customer per request, where every pass over the articles counts. Any decoder; a dot-product
    model gets the same numbers (to rounding) faster from `DotBlend`."""
    base = zscore(gnn, inplace=True)
    segments = blend_segments(blend)
    which = segment_index(segments, signals.purchases[customers])
    weights = torch.tensor([segments[i]["popularity_weight"] for i in which], dtype=base.dtype, device=base.device)
    base.addr_(weights, torch.from_numpy(signals.log_pop).to(base.device, base.dtype))
    return add_customer_signals(base, customers, which, segments, signals)


def add_customer_signals(base: torch.Tensor, customers: np.ndarray, which: np.ndarray,
                         segments: list[dict[str, Any]], signals: BlendSignals,
                         columns: np.ndarray | None = None) -> torch.Tensor:
    """The sparse, per-customer part of the blend, in place: each segment's walk, variant and repurchase terms
    (or its drop of bought articles). `columns`: the sorted articles that `base`'s columns hold (None: all)."""
    for i, g in enumerate(segments):
        rows = np.flatnonzero(which == i)
        if not len(rows):
            continue
        terms = []
        if g.get("walk_weight") and signals.walk is not None:
            terms.append((signals.walk.entries(customers[rows]), g["walk_weight"]))
        if g.get("variant_weight") and signals.variant is not None:
            terms.append((csr_rows(signals.variant, customers[rows]), g["variant_weight"]))
        terms.append((csr_rows(signals.repurchase[g["repurchase_half_life"]], customers[rows]),
                      g["repurchase_weight"]))
        for (r, c, v), weight in terms:
            if columns is not None:
                keep, c = positions_in(columns, c)
                r, c, v = r[keep], c[keep], v[keep]
            apply_blend(base, (rows[r], c, v), weight)
    return base


def embedding_moments(article_emb: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Mean [d] and covariance [d, d] (float64, torch.std's n - 1) of the article embeddings: a customer u's dot
    scores over all articles have mean u . mean and variance u^T cov u."""
    v = article_emb.double()
    mean = v.mean(0)
    centred = v - mean
    return mean, centred.t() @ centred / max(len(v) - 1, 1)


def zscore_terms(customer_emb: torch.Tensor, mean: torch.Tensor,
                 cov: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(mean, scale) of each customer's dot scores over all articles, from the article embeddings' moments
    (`embedding_moments`), in float64: the z-score of u . v is (u . v - mean) x scale, as `zscore` computes it."""
    u = customer_emb.double()
    return u @ mean, 1.0 / (((u @ cov) * u).sum(1).clamp(min=0).sqrt() + 1e-6)


class DotBlend:
    """`blended_scores` for a dot-product decoder as one matrix product, without a pass over the scores.

    A customer's z-score needs the mean and the standard deviation of u . v over all articles; they are u . mean(v)
    and sqrt(u^T cov(v) u), from the article embeddings' moments (float64, d x d). So the z-scored, popularity-
    weighted dense part is [u / std, -mean / std, weight] . [v, 1, log_pop] (per customer weight: its segment's),
    computed only for the articles asked for; the sparse terms follow. Measured on the seed model (82,477
    articles, 512 customers, 1 thread): 0.27 s instead of 0.61 s, scores within 5e-6, the same top 12.

    Args:
        article_emb: [n_articles, d] (the z-score statistics are over all of them).
        signals, blend: as for `blended_scores`.
    """

    def __init__(self, article_emb: torch.Tensor, signals: BlendSignals, blend: dict[str, Any]) -> None:
        self.mean, self.cov = embedding_moments(article_emb)
        self.signals, self.segments = signals, blend_segments(blend)
        log_pop = torch.from_numpy(signals.log_pop).to(article_emb.device, article_emb.dtype)
        ones = torch.ones(len(article_emb), 1, dtype=article_emb.dtype, device=article_emb.device)
        self.articles = torch.cat([article_emb, ones, log_pop[:, None]], 1).contiguous()  # [n_articles, d + 2]
        self._scratch = threading.local()  # one reusable output per thread (see `scores`)

    def scores(self, customer_emb: torch.Tensor, customers: np.ndarray, columns: np.ndarray | None = None,
               scratch: bool = False, parts: tuple[torch.Tensor, np.ndarray, np.ndarray] | None = None) -> torch.Tensor:
        """[len(customers), len(columns)] blended scores of these customers (`customer_emb`: their embeddings)
        for the sorted articles `columns` (None: all). `scratch` writes them into this thread's reusable buffer,
        valid until its next `scratch` call: a fresh [512 x 48,000] output costs as much as the product itself
        (page faults), measured 84 ms vs 42 ms at full scale. `parts` = (rows of `self.articles` prepared once,
        their positions in `columns`, the other positions) scores the prepared rows without gathering them again
        (one request against a fixed candidate set)."""
        u = customer_emb.double()
        mean, scale = zscore_terms(u, self.mean, self.cov)
        which = segment_index(self.segments, self.signals.purchases[customers])
        weight = torch.tensor([self.segments[i]["popularity_weight"] for i in which], dtype=torch.float64,
                              device=u.device)
        augmented = torch.cat([u * scale[:, None], (-mean * scale)[:, None], weight[:, None]], 1)
        augmented = augmented.to(customer_emb.dtype)
        if parts is not None:
            prepared, at, others = parts
            base = torch.empty(len(customers), len(columns), dtype=augmented.dtype, device=augmented.device)
            base[:, torch.from_numpy(at).to(u.device)] = self._product(augmented, prepared)
            if len(others):
                rows = self.articles.index_select(0, torch.from_numpy(columns[others]).to(u.device))
                base[:, torch.from_numpy(others).to(u.device)] = self._product(augmented, rows)
        else:
            articles = (self.articles if columns is None else
                        self.articles.index_select(0, torch.from_numpy(columns).to(u.device)))
            out = None
            if scratch and len(customers) > 1:
                size = len(customers) * len(articles)
                buffer = getattr(self._scratch, "buffer", None)
                if buffer is None or buffer.numel() < size:
                    buffer = self._scratch.buffer = torch.empty(size, dtype=articles.dtype, device=articles.device)
                out = buffer[:size].view(len(customers), len(articles))
            base = self._product(augmented, articles, out)
        return add_customer_signals(base, customers, which, self.segments, self.signals, columns)

    @staticmethod
    def _product(augmented: torch.Tensor, articles: torch.Tensor, out: torch.Tensor | None = None) -> torch.Tensor:
        if len(augmented) == 1:  # one request: a matrix-vector product (0.8 ms vs 1.1 ms at seed scale)
            return torch.mv(articles, augmented[0]).unsqueeze(0)
        return torch.mm(augmented, articles.t(), out=out)


# (repurchase half-life, popularity, repurchase, variant, walk)
Setting = tuple[float, float, "float | None", float, float]


def _setting(g: Setting) -> dict[str, Any]:
    return {"repurchase_half_life": g[0], "popularity_weight": g[1], "repurchase_weight": g[2],
            "variant_weight": g[3], "walk_weight": g[4]}


@torch.no_grad()
def fit_blend(model: HeteroSAGERecommender, c_emb: torch.Tensor, a_emb: torch.Tensor, signals: BlendSignals,
              truth: WindowTruth, k: int = 12) -> dict[str, Any]:
    """Search the blend weights on the validation window, overall and per segment of customers: the
    (half-life, popularity, repurchase) grid first, then the variant weight beside the popularity weight for
    the (half-life, repurchase) pairs that won somewhere. `signals`: as of the end of history, with every
    REPURCHASE_HALF_LIVES and the variant term. Returns the best settings and every one tried."""
    customers = truth.customers
    log_pop = torch.from_numpy(signals.log_pop)
    segment = np.searchsorted(HISTORY_SEGMENTS, signals.purchases[customers], side="right") - 1

    def search(settings: list[Setting]) -> dict[Setting, np.ndarray]:
        # base scores shared by equal (popularity, variant); returns each setting's AP@k per customer
        tops: dict[Setting, list[np.ndarray]] = {g: [] for g in settings}
        for s in range(0, len(customers), 512):
            cust = customers[s:s + 512]
            z = zscore(model.score_all(c_emb, a_emb, torch.from_numpy(cust.astype(np.int64)).to(c_emb.device)))
            rep_entries = {h: csr_rows(signals.repurchase[h], cust) for h in {g[0] for g in settings}}
            var_entries = csr_rows(signals.variant, cust)
            walk = None
            if any(g[4] for g in settings):  # dense once per chunk: a scatter per setting took minutes at seed scale
                rows, cols, values = signals.walk.entries(cust)
                walk = torch.zeros_like(z)
                walk[torch.from_numpy(rows).to(z.device), torch.from_numpy(cols).to(z.device)] = \
                    torch.from_numpy(values).to(z.device, z.dtype)
            for p, v, w in dict.fromkeys((g[1], g[3], g[4]) for g in settings):
                base = z + p * log_pop.to(z.device)
                if v:
                    apply_blend(base, var_entries, v)
                if w:
                    base.add_(walk, alpha=w)
                for g in settings:
                    if (g[1], g[3], g[4]) == (p, v, w):
                        scores = apply_blend(base.clone(), rep_entries[g[0]], g[2])
                        tops[g].append(torch.topk(scores, min(k, scores.shape[1]), dim=1).indices.cpu().numpy())
        return {g: truth.average_precision(np.concatenate(t), k) for g, t in tops.items()}

    def best(aps: dict[Setting, np.ndarray], mask: np.ndarray) -> Setting:
        return max(aps, key=lambda g: aps[g][mask].mean())  # first of equals: the simpler setting

    everyone = np.ones(len(customers), bool)
    masks = [segment == i for i in range(len(HISTORY_SEGMENTS))]
    sized = [m for m in masks if m.sum() >= MIN_SEGMENT_CUSTOMERS]
    aps = search([(h, p, r, 0.0, 0.0) for h in REPURCHASE_HALF_LIVES for p in POPULARITY_WEIGHTS
                  for r in REPURCHASE_WEIGHTS])
    pairs = dict.fromkeys((g[0], g[2]) for g in [best(aps, everyone)] + [best(aps, m) for m in sized])
    aps |= search([(h, p, r, v, 0.0) for h, r in pairs for v in VARIANT_WEIGHTS if v for p in POPULARITY_WEIGHTS])
    if signals.walk is not None:  # the walk weight beside the popularity weight, for the settings that won
        won = dict.fromkeys((g[0], g[2], g[3]) for g in [best(aps, everyone)] + [best(aps, m) for m in sized])
        aps |= search([(h, p, r, v, k) for h, r, v in won for k in WALK_WEIGHTS if k for p in POPULARITY_WEIGHTS])

    overall = best(aps, everyone)
    chosen = np.zeros(len(customers))
    segments = []
    for lo, mask in zip(HISTORY_SEGMENTS, masks):
        g = best(aps, mask) if mask.sum() >= MIN_SEGMENT_CUSTOMERS else overall
        chosen[mask] = aps[g][mask]
        segments.append({"min_purchases": lo, "validation_customers": int(mask.sum()), **_setting(g),
                         "map@12": float(aps[g][mask].mean()) if mask.any() else None})
    grid = [{**_setting(g), "map@12": float(ap.mean()),
             "segments_map@12": [float(ap[m].mean()) if m.any() else None for m in masks]} for g, ap in aps.items()]
    return {**_setting(overall), "segments": segments, "validation_map@12": float(chosen.mean()),
            "one_setting_map@12": float(aps[overall].mean()), "grid": grid}


# ---- the step ------------------------------------------------------------------------------------------------
def _run_key(cfg: Config, inputs: list[Path]) -> str:
    blob = json.dumps([cfg.section("train"), [(i["bytes"], i["fingerprint"]) for i in artifacts.describe_inputs(inputs)]],
                      sort_keys=True, default=str)
    return hashlib.blake2b(blob.encode(), digest_size=16).hexdigest()


def _save_state(path: Path, state: dict[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = artifacts.atomic_path(path)
    torch.save(state, tmp)
    os.replace(tmp, path)  # a kill mid-write leaves the previous state intact


@distributed.launched  # under `torchrun --nproc-per-node N`: one rank of a data-parallel run
def run(cfg: Config, inp: Path | None = None, out: Path | None = None, force: bool = False) -> Path:
    """Train on <workdir>/split + <workdir>/graph; write model.pt, the training log and the curve plot."""
    # same seed, same model in every process: without this, multi-threaded CPU kernels accumulate gradients in an
    # order that depends on thread timing (measured: parameters 0.014 apart between two runs of configs/tiny.toml)
    previous = torch.are_deterministic_algorithms_enabled()
    torch.use_deterministic_algorithms(True, warn_only=True)
    try:
        return _train(cfg, inp, out, force)
    finally:
        torch.use_deterministic_algorithms(previous)


def _train(cfg: Config, inp: Path | None, out: Path | None, force: bool) -> Path:
    started = time.perf_counter()
    tc = cfg.train.resolved()
    workdir = Path(cfg.workdir)
    split_dir = Path(inp) if inp else workdir / artifacts.SPLIT
    graph_dir = workdir / artifacts.GRAPH
    tables_dir = workdir / artifacts.TABLES
    out = Path(out) if out else model_dir(cfg)
    artifacts.require(graph_dir, [artifacts.GRAPH_PT, artifacts.FEATURE_NAMES], artifacts.GRAPH)
    artifacts.require(split_dir, [artifacts.HISTORY_PARQUET, artifacts.VALIDATION_PARQUET,
                                  artifacts.VALIDATION_PAIRS_PARQUET], artifacts.SPLIT)
    artifacts.require(tables_dir, [artifacts.ARTICLES_PARQUET], artifacts.TABLES)
    inputs = [graph_dir / artifacts.GRAPH_PT, graph_dir / artifacts.FEATURE_NAMES,
              split_dir / artifacts.HISTORY_PARQUET, split_dir / artifacts.VALIDATION_PARQUET,
              split_dir / artifacts.VALIDATION_PAIRS_PARQUET, tables_dir / artifacts.ARTICLES_PARQUET]
    if artifacts.skip_if_current(out, "train", cfg.section("train"), inputs, force):
        return out

    device = resolve_device(tc.device)
    data = load_training_data(graph_dir, split_dir, tables_dir)
    trainer = Trainer(tc, cfg.seed, data, device)
    key = _run_key(cfg, inputs)
    state_path = out.parent / f".{out.name}.partial" / STATE_PT
    if state_path.exists() and not force:
        state = trainer.dist.load(state_path)
        if state.get("key") == key:
            trainer.load_state(state)
            info(f"[yellow]train[/yellow]: resuming from epoch {trainer.epoch} ({state_path})")
    info(f"[green]train[/green]: {trainer.model!r} on {device}, {trainer.steps_per_epoch()} steps/epoch, "
         f"{len(trainer.val_truth.customers)} validation customers")
    trainer.dist.check_in_sync(trainer)  # torchrun: every rank starts from the same (resumed) state

    out_of_time = None
    if tc.max_minutes:  # the budget counts the epochs of an interrupted run too
        deadline = time.perf_counter() + tc.max_minutes * 60 - sum(r["seconds"] for r in trainer.log)
        out_of_time = lambda: time.perf_counter() >= deadline  # noqa: E731
        # a resumed run whose budget is spent stops (the ranks agreeing); a fresh one trains at least one step
        trainer.timed_out = trainer.epoch > 0 and trainer.dist.sum(float(out_of_time())) > 0
    with progress() as bar:
        task = bar.add_task("epochs", total=tc.epochs, completed=trainer.epoch)
        while not trainer.finished():
            t0 = time.perf_counter()
            loss = trainer.train_epoch(out_of_time=out_of_time)
            val_map = trainer.dist.validate(trainer)  # torchrun: rank 0's, broadcast
            trainer.epoch += 1
            if val_map > trainer.best_map:
                trainer.best_map, trainer.best_epoch, trainer.bad_epochs = val_map, trainer.epoch, 0
                trainer.best_state = copy.deepcopy(trainer.model.state_dict())
            else:
                trainer.bad_epochs += 1
            trainer.log.append({"epoch": trainer.epoch, "loss": loss, "val_map@12": val_map,
                                "seconds": round(time.perf_counter() - t0, 3), "steps": trainer.last_steps})
            if trainer.dist.is_main:
                _save_state(state_path, trainer.state(key))
            line = f"epoch {trainer.epoch} loss {loss:.4f} val MAP@12 {val_map:.4f} (best {trainer.best_map:.4f})"
            if trainer.timed_out:
                line += (f"; train.max_minutes = {tc.max_minutes:g} spent after {trainer.last_steps} of "
                         f"{trainer.steps_per_epoch()} steps")
            bar.update(task, completed=trainer.epoch, description=line)
            if not console.is_terminal and trainer.dist.is_main:
                info(f"train: {line}")  # a log file gets one line per epoch (a bar redraws only on a terminal)

    if not trainer.dist.is_main:
        return out  # torchrun: rank 0 alone fits the blend and writes `out`; the others wait for it at a barrier
    trainer.model.load_state_dict(trainer.best_state)
    blend = None
    if tc.blend:
        c_emb, a_emb = trainer.embeddings_for_validation()
        # the blend's inputs, also the pair head's (repurchase signal, counts, variant term)
        signals = BlendSignals.of(data.history, data.history_end, REPURCHASE_HALF_LIVES, data.article_product,
                                  walk=tc.walk)
        blend = fit_blend(trainer.model, c_emb, a_emb, signals, trainer.val_truth)
        info(f"[green]train[/green]: blend popularity={blend['popularity_weight']} "
             f"repurchase={blend['repurchase_weight']} (half-life {blend['repurchase_half_life']}) "
             f"variant={blend['variant_weight']} walk={blend['walk_weight']}: "
             f"validation MAP@12 {blend['one_setting_map@12']:.4f}, "
             f"per segment {blend['validation_map@12']:.4f} (GNN alone {trainer.best_map:.4f})")

    head = None
    if blend and trainer.model.mlp is None:
        head = fit_pair_head(c_emb, a_emb, data, signals, split_dir / artifacts.VALIDATION_PAIRS_PARQUET,
                             cfg.seed)
        info(f"[green]train[/green]: pair head (binary metrics) fit on {head['pairs']:,} validation pairs")

    with artifacts.StepOutput(out, "train", cfg.to_dict(), cfg.section("train"), inputs,
                              started=started) as so:
        checkpoint = {
            "recipe": tc.recipe, "model_args": trainer.model.model_args,
            "state_dict": {k: v.cpu() for k, v in trainer.model.state_dict().items()},
            "train_config": tc.__dict__, "config": cfg.to_dict(), "seed": cfg.seed,
            "feature_names": data.feature_names, "time_features": tc.time_features,
            "graph_fingerprint": artifacts.fingerprint(graph_dir / artifacts.GRAPH_PT),
            "blend": {k: v for k, v in blend.items() if k != "grid"} if blend else None,
            "article_product": data.article_product,  # the blend's variant term
            "pair_head": head,  # P(bought) of a pair, for the binary metrics (hmgnn/pair_head.py)
            "best_epoch": trainer.best_epoch, "validation_map@12": trainer.best_map,
        }
        torch.save(checkpoint, so.dir / artifacts.MODEL_PT)
        pl.DataFrame(trainer.log).write_csv(so.dir / artifacts.TRAIN_LOG)
        if blend:
            (so.dir / "blend_grid.json").write_text(json.dumps(blend["grid"], indent=1))
        _plot(trainer.log, so.dir / CURVE_PNG)
        so.rows = {"epochs": trainer.epoch, "best_epoch": trainer.best_epoch,
                   "validation_customers": len(trainer.val_truth.customers)}
        so.extra["steps_per_epoch"] = trainer.steps_per_epoch()
        so.extra["validation"] = {"gnn_map@12": trainer.best_map,
                                  "blend_map@12": blend["validation_map@12"] if blend else None}
    shutil.rmtree(state_path.parent, ignore_errors=True)
    return out


def fit_pair_head(c_emb: torch.Tensor, a_emb: torch.Tensor, data: TrainingData, signals: BlendSignals | None,
                  pairs_path: Path, seed: int) -> dict[str, Any]:
    """The pair head (hmgnn/pair_head.py) on the validation window's positive and uniform pairs, every input as of
    the end of history."""
    from hmgnn import pair_head

    pairs = pl.read_parquet(pairs_path).filter(pl.col("kind").is_in(artifacts.BINARY_KINDS))
    customers = pairs["customer_index"].to_numpy().astype(np.int64)
    articles = pairs["article_index"].to_numpy().astype(np.int64)
    if len(np.unique(pairs["label"].to_numpy())) < 2:
        raise InputError(f"{pairs_path} needs bought and negative pairs; run `hmgnn sample --force`")
    features = pair_head.PairFeatures(data.history, data.history_end, data.article_product, signals)
    z = pair_head.pair_zscores(c_emb.cpu(), a_emb.cpu(), customers, articles, *embedding_moments(a_emb.cpu()))
    return pair_head.fit(features.matrix(z, customers, articles), pairs["label"].to_numpy(), seed)


def _plot(log: list[dict[str, Any]], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    epochs = [r["epoch"] for r in log]
    fig, ax = plt.subplots(1, 2, figsize=(9, 3.2))
    ax[0].plot(epochs, [r["loss"] for r in log], marker="o")
    ax[0].set(title="training loss", xlabel="epoch")
    ax[1].plot(epochs, [r["val_map@12"] for r in log], marker="o", color="tab:green")
    ax[1].set(title="validation MAP@12 (GNN alone)", xlabel="epoch")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)

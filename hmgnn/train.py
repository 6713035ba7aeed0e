"""`hmgnn train`: fit the heterogeneous GraphSAGE recommender on history and select it on the validation window,
then fit the ranker (hmgnn/ranking) over its candidates on the label windows after the GNN's training purchases.

Writes <workdir>/model/ (the `reference` recipe, no ranker: <workdir>/reference/): model.pt, train_log.csv,
train_curve.png, ranker.json, the model card README.md, and the data recommending reads (hmgnn/portable.py), so the
folder loads on its own.
"""

from __future__ import annotations

import copy
import dataclasses
import datetime as dt
import hashlib
import json
import math
import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl
import scipy.sparse as sp
import torch

from hmgnn import __version__, artifacts, distributed, portable
from hmgnn.device import resolve_device
from hmgnn.config import Config, TrainConfig
from hmgnn.console import console, info, progress
from hmgnn.errors import InputError
from hmgnn.graph import load_graph_features
from hmgnn.interactions import Interactions, WindowTruth, article_sales, purchase_matrix
from hmgnn.models.base import csr_rows, stored_at, top_k
from hmgnn.models.gnn import HeteroSAGE
from hmgnn.models.node_inputs import (ARTICLE_TIME_FEATURES, CUSTOMER_TIME_FEATURES, OwnEdges, build_adjacency,
                                      inputs_on, node_inputs)
from hmgnn.models.sparse import Adjacency
from hmgnn.ranking.candidates import GNNScores
from hmgnn.ranking.checkpoint import Checkpoint
from hmgnn.ranking.features import ArticleMeta
from hmgnn.ranking.fit import choose_rest_mix, fit_ranker, label_windows
from hmgnn.ranking.recommender import ranker_scores

STATE_PT = "state.pt"
CURVE_PNG = "train_curve.png"
RANKER_JSON = "ranker.json"
MODEL_CARD = artifacts.MODEL_CARD

CHECKPOINT_FIELDS = [field.name for field in dataclasses.fields(Checkpoint)]
"""What model.pt holds, recorded in the train manifest: a model/ written by a version whose fields differ is due."""


def model_dir(cfg: Config) -> Path:
    """Where `hmgnn train` writes: model/ for the hybrid GNN, reference/ for the reference recipe."""
    return Path(cfg.workdir) / (artifacts.REFERENCE if cfg.train.recipe == "reference" else artifacts.MODEL)


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
    meta: ArticleMeta
    train_end: dt.date | None = None
    """The GNN's training purchases end here (default: the end of history); the ranker's label windows follow."""


def load_training_data(graph_dir: Path, split_dir: Path, tables_dir: Path) -> TrainingData:
    customer_x, article_x, names = load_graph_features(graph_dir)
    nc, na = customer_x.shape[0], article_x.shape[0]
    windows = (artifacts.read_manifest(split_dir) or {}).get("windows")
    if not windows:
        raise InputError(f"{split_dir}/manifest.json has no 'windows'; run `hmgnn sample` again (with --force)")
    summary = artifacts.TablesSummary.read(tables_dir)
    if (summary.n_customers, summary.n_articles) != (nc, na):
        raise InputError(f"{tables_dir} has {summary.n_customers} customers x {summary.n_articles} articles, "
                         f"{graph_dir / artifacts.GRAPH_PT} {nc} x {na}; run `hmgnn build-graph --force`")
    columns = ["customer_index", "article_index", "t_dat", "price"]
    history = summary.interactions(pl.read_parquet(split_dir / artifacts.HISTORY_PARQUET, columns=columns))
    validation = summary.interactions(pl.read_parquet(split_dir / artifacts.VALIDATION_PARQUET, columns=columns))
    if len(history) == 0 or len(validation) == 0:
        raise InputError(f"{split_dir}: the history or validation window is empty; move sample.cutoff or "
                         "lengthen sample.val_days")
    return TrainingData(customer_x, article_x, names, history, validation,
                        dt.date.fromisoformat(windows["history_end"]), dt.date.fromisoformat(windows["val_end"]),
                        ArticleMeta.read(tables_dir))


def build_model(tc: TrainConfig, data: TrainingData) -> HeteroSAGE:
    extra_c = len(CUSTOMER_TIME_FEATURES) if tc.time_features else 0
    extra_a = len(ARTICLE_TIME_FEATURES) if tc.time_features else 0
    return HeteroSAGE(
        num_customers=data.customer_x.shape[0], num_articles=data.article_x.shape[0],
        customer_channels=data.customer_x.shape[1], article_channels=data.article_x.shape[1],
        customer_extra_channels=extra_c, article_extra_channels=extra_a, hidden_channels=tc.hidden,
        num_layers=tc.layers, id_embeddings=tc.id_embeddings, dropout=tc.dropout, decoder=tc.decoder,
        combine=tc.combine, own_edges=tc.own_edges)


OWN_LR_SCALE = 10.0
"""The own-edge term's learning rate, in multiples of `train.lr`: Adam moves each weight by about the learning rate
per step, and its five weights must reach the scale of the embeddings' dot products within the epochs early
stopping allows, where each embedding weight moves only a little of a score."""


def param_groups(model: HeteroSAGE, lr: float) -> list[dict[str, Any]]:
    """The optimiser's parameter groups: the own-edge term at OWN_LR_SCALE x `lr`, everything else at `lr`."""
    own = list(model.own.parameters()) if model.own is not None else []
    rest = [p for name, p in model.named_parameters() if not name.startswith("own.")]
    return [{"params": rest}] + ([{"params": own, "lr": lr * OWN_LR_SCALE}] if own else [])


@dataclass
class EpochGraph:
    """What an epoch trains on: the message-passing graph (adjacency and node inputs, the keyword arguments of
    `HeteroSAGE.embeddings`) and the supervision purchases it predicts, with their recency weights."""

    adj: Adjacency
    inputs: dict[str, torch.Tensor | None]
    customers: torch.Tensor
    articles: torch.Tensor
    weights: torch.Tensor | None
    walk: WalkSampler | None = None
    """Draws the `walk` negatives over the message-passing purchases (None with other negatives)."""
    own: OwnEdges | None = None
    """The message-passing purchases' pairs, for the own-edge term (None without `train.own_edges`)."""


class WalkSampler:
    """Articles where a 3-step random walk customer -> article -> buyer -> article ends on the purchase graph, one
    walk per customer asked for: negatives like the ranker's hardest candidates (bought together with what the
    customer bought). A customer without purchases gets a uniform article; with `new_only`, so does a walk that
    ends at an article the customer bought (a known purchase is no negative: on data where customers re-buy their
    staples, walks return to them often, and the GNN would learn to rank them low).

    Args:
        counts: [n_customers, n_articles] purchases the walks run over (any stored entry is an edge).
        new_only: replace walks that end at one of the customer's own articles by uniform articles.
    """

    def __init__(self, counts: sp.csr_matrix, new_only: bool = False) -> None:
        c = counts.tocsr()
        self.counts = c if new_only else None
        t = c.T.tocsr()
        self.c_ptr, self.c_col = torch.from_numpy(c.indptr.astype(np.int64)), torch.from_numpy(c.indices.astype(np.int64))
        self.a_ptr, self.a_col = torch.from_numpy(t.indptr.astype(np.int64)), torch.from_numpy(t.indices.astype(np.int64))
        self.n_articles = c.shape[1]

    @staticmethod
    def _step(ptr: torch.Tensor, col: torch.Tensor, nodes: torch.Tensor,
              generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
        """A uniform neighbour of each node (0 where it has none), and whether it had one."""
        start, degree = ptr[nodes], ptr[nodes + 1] - ptr[nodes]
        has = degree > 0
        pick = (torch.rand(len(nodes), generator=generator, dtype=torch.float64) * degree).long()
        at = torch.where(has, start + pick, 0)
        return (col[at] if len(col) else torch.zeros_like(nodes)), has

    def sample(self, customers: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        article, ok = self._step(self.c_ptr, self.c_col, customers, generator)
        buyer, ok2 = self._step(self.a_ptr, self.a_col, article, generator)
        end, ok3 = self._step(self.c_ptr, self.c_col, buyer, generator)
        uniform = torch.randint(self.n_articles, (len(customers),), generator=generator)
        walked = ok & ok2 & ok3
        if self.counts is not None:
            own = stored_at(self.counts, customers.numpy(), end.numpy()) >= 0
            walked &= torch.from_numpy(~own)
        return torch.where(walked, end, uniform)


class Trainer:
    """One training run: epochs of full-batch message passing, validation MAP@12, checkpoints, resume."""

    def __init__(self, tc: TrainConfig, seed: int, data: TrainingData, device: torch.device,
                 validate: bool = True) -> None:
        """`validate=False` (a refit on every purchase, for a fixed epoch count) sets up no validation."""
        self.tc, self.seed, self.data, self.device, self.validates = tc, seed, data, device, validate
        torch.manual_seed(seed)
        self.model = build_model(tc, data).to(device)
        self.optimizer = torch.optim.Adam(param_groups(self.model, tc.lr), lr=tc.lr, weight_decay=tc.weight_decay)
        self.generator = torch.Generator().manual_seed(seed)
        self.epoch = 0
        self.best_map = -1.0
        self.best_epoch = 0
        self.best_state: dict[str, torch.Tensor] | None = None
        self.bad_epochs = 0
        self.timed_out = False
        self.deadline: float | None = None
        self.last_steps = 0
        self.log: list[dict[str, Any]] = []
        self.dist = distributed.current()  # rank 0 of 1 unless launched by torchrun
        # the GNN learns from the purchases up to train_end; the ranker's label windows come after it
        self.train_end = data.train_end or data.history_end
        self.train_history = data.history.until(self.train_end)
        self._prepare()
        # fixed for the run (the same targets each epoch, or the same share of history), so kept past `release`
        n = self._fixed.customers.numel() if tc.supervision == "recent" else int(len(self.train_history) * tc.disjoint_ratio)
        self._steps = max(1, math.ceil(n / self.batch_size(n)))

    # ---- data for every epoch ---------------------------------------------------------------------------
    def _prepare(self) -> None:
        tc, hist = self.tc, self.train_history
        days = hist.days_before(self.train_end)
        if tc.supervision == "recent":
            # no leakage inside training: targets are the last target_days, predicted from the purchases before
            self.target_days = target_span(days, tc.target_days, tc.min_targets)
            target = days < self.target_days
            if not target.any() or target.all():
                raise InputError(f"train.target_days = {tc.target_days} leaves no targets or no message-passing "
                                 "edges in the history window; change train.target_days")
            as_of = self.train_end - dt.timedelta(days=self.target_days)
            if self.target_days > tc.target_days and self.dist.is_main:
                info(f"train: the last {tc.target_days} days hold {int((days < tc.target_days).sum()):,} purchases, "
                     f"under train.min_targets = {tc.min_targets:,}; the GNN's targets are the last "
                     f"{self.target_days} days' {int(target.sum()):,}")
            self._fixed = self._epoch_graph(~target, target, as_of)
            if not self._fixed.customers.numel():
                raise InputError("train.targets = new leaves no target purchases: every purchase of the last "
                                 f"{self.target_days} days re-buys an article; set train.targets = all")
        counts = article_sales(hist)
        self.popularity = torch.from_numpy(counts ** 0.75 + 1e-3)
        if not self.validates:
            return
        hist = self.data.history
        # validation: message passing over all of history, scored on the validation window's buyers
        self.val_adj = build_adjacency(hist, as_of=self.data.history_end, half_life=tc.edge_half_life).to(self.device)
        self.val_inputs = inputs_on(node_inputs(tc.recipe, tc.time_features, self.data.customer_x, self.data.article_x,
                                          hist, self.data.history_end), self.device)
        self.val_own = OwnEdges.of(hist, self.data.history_end) if tc.own_edges else None
        # only customers with a history: the others get the cold-start fallback, never the GNN or the ranker, so
        # their GNN scores (an untrained ID embedding, no neighbours) would only add noise to early stopping
        warm = np.bincount(hist.customer_index, minlength=hist.n_customers) > 0
        self.val_truth = WindowTruth.of(self.data.validation, tc.val_customers, self.seed, among=warm)
        if not len(self.val_truth.customers):
            raise InputError("no customer of the validation window bought in the history window, so there is "
                             "nothing to validate the GNN on; move sample.cutoff later or widen sample.val_days")

    def _epoch_graph(self, mp_mask: np.ndarray, target_mask: np.ndarray, as_of: dt.date) -> EpochGraph:
        hist = self.train_history
        counts = purchase_matrix(hist, where=mp_mask)  # the adjacency's pairs and the walk negatives' graph
        if self.tc.targets == "new":  # only the target purchases of articles the customer had not bought
            at = np.flatnonzero(target_mask)
            bought = stored_at(counts, hist.customer_index[at].astype(np.int64), hist.article_index[at].astype(np.int64))
            target_mask = target_mask.copy()
            target_mask[at[bought >= 0]] = False
        adj = build_adjacency(hist, mp_mask, counts=counts, as_of=as_of, half_life=self.tc.edge_half_life).to(self.device)
        inputs = inputs_on(node_inputs(self.tc.recipe, self.tc.time_features, self.data.customer_x,
                                 self.data.article_x, hist, as_of, mp_mask), self.device)
        c = torch.from_numpy(hist.customer_index[target_mask].astype(np.int64))
        a = torch.from_numpy(hist.article_index[target_mask].astype(np.int64))
        if self.tc.recency_half_life > 0:
            age = hist.days_before(self.train_end)[target_mask]
            w = torch.from_numpy(np.exp2(-age / self.tc.recency_half_life).astype(np.float32))
        else:
            w = None
        walk = None
        if self.tc.negatives in ("walk", "walk-new"):
            walk = WalkSampler(counts, new_only=self.tc.negatives == "walk-new")
        own = OwnEdges.of(hist, as_of, mp_mask) if self.tc.own_edges else None
        return EpochGraph(adj, inputs, c, a, w, walk, own)

    def _graph_for_epoch(self) -> EpochGraph:
        if self.tc.supervision == "recent":
            return self._fixed
        # disjoint: a fresh random split of history each epoch, drawn from the run's generator (resumable)
        n = len(self.train_history)
        target = (torch.rand(n, generator=self.generator) < self.tc.disjoint_ratio).numpy()
        return self._epoch_graph(~target, target, self.train_end)

    # ---- one epoch -----------------------------------------------------------------------------------------
    def _negatives(self, customers: torch.Tensor, per: int, walk: WalkSampler | None) -> torch.Tensor:
        """[len(customers) * per] negative articles, `per` for each customer in turn (`train.negatives`)."""
        n_articles = self.data.article_x.shape[0]
        count = len(customers) * per
        if self.tc.negatives == "popularity":
            return torch.multinomial(self.popularity, count, replacement=True, generator=self.generator)
        uniform = torch.randint(n_articles, (count,), generator=self.generator)
        if walk is not None:
            walked = walk.sample(customers.cpu().repeat_interleave(per), self.generator)
            half = torch.rand(count, generator=self.generator) < 0.5
            return torch.where(half, walked, uniform)
        return uniform

    def train_epoch(self, on_step=None, out_of_time=None) -> float:
        """One pass over the supervision edges; the mean loss. `out_of_time()` (checked after each step, the
        ranks agreeing under torchrun) ends the epoch early; `self.last_steps` says how many steps ran."""
        tc, model = self.tc, self.model
        g = self._graph_for_epoch()
        model.train()
        order = torch.randperm(g.customers.numel(), generator=self.generator)
        batch = self.batch_size(order.numel())
        total, steps = 0.0, 0
        for start in range(0, order.numel(), batch):
            idx = order[start:start + batch]
            c, a = g.customers[idx].to(self.device), g.articles[idx].to(self.device)
            w = g.weights[idx].to(self.device) if g.weights is not None else None
            self.optimizer.zero_grad(set_to_none=True)
            c_emb, a_emb = model.embeddings(g.adj, **g.inputs)
            # under torchrun each rank scores its block of the batch (one process: all of it); see distributed.py
            n, mine, batch_a, batch_w, batch_c = c.numel(), self.dist.shard(c.numel()), a, w, c
            c, a, w = c[mine], a[mine], (w[mine] if w is not None else None)
            if tc.loss == "softmax":
                log_pop = torch.log(self.popularity / self.popularity.sum()).float().to(self.device)
                loss = model.sampled_softmax_loss(c_emb, a_emb, c, a, log_pop, w, num_negatives=min(8192, n),
                                                  negative_index=batch_a)
            else:
                neg = self._negatives(batch_c, tc.num_negatives, g.walk).to(self.device).view(n, tc.num_negatives)[mine]
                pos = model.score(c_emb, a_emb, c, a)
                negs = model.decode(c_emb[c].unsqueeze(1), a_emb[neg])
                if g.own is not None:  # the pairs bought before also score their own edge's term
                    c_np = c.cpu().numpy()
                    pos = pos + g.own.pairs(model, c_np, a.cpu().numpy(), self.device)
                    negs = negs + g.own.pairs(model, np.repeat(c_np, neg.shape[1]), neg.cpu().numpy().ravel(),
                                              self.device).view(neg.shape)
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
    def validate(self, drop_bought: bool | None = None) -> float:
        """MAP@12 of the raw GNN scores on the validation window (full ranking over all articles); `drop_bought`
        leaves out each customer's bought articles, as a peer like ALS ranks. By default (the early-stopping
        criterion) a model learning from new articles only (`train.targets = new`) is judged without them: early
        stopping keeps the epoch whose embeddings rank the articles new to each customer best. A model with the
        own-edge term is judged with them, since that term ranks exactly the customer's own articles."""
        if drop_bought is None:
            drop_bought = self.tc.targets == "new"
        c_emb, a_emb = self.embeddings_for_validation()
        bought = self.data.history.user_items() if drop_bought else None
        return validation_map(self.model, c_emb, a_emb, self.val_truth, bought=bought, own=self.val_own)

    def batch_size(self, targets: int) -> int:
        """Positives per step: `train.batch_size`, smaller where that would leave fewer than `train.min_steps`
        steps per epoch, so a small data set gets as many updates per epoch as a large one."""
        return max(1, min(self.tc.batch_size, math.ceil(targets / self.tc.min_steps)))

    def steps_per_epoch(self) -> int:
        return self._steps

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

    def release(self) -> None:
        """Drops what only the epochs need (the epoch and validation graphs, the training purchases, the optimizer's
        moments, the best state once loaded), so that the refit and the ranker stage that follow have that memory;
        the model, the log and the counters (steps per epoch among them) stay."""
        self._fixed = self.val_adj = self.val_inputs = self.val_own = self.train_history = None
        self.optimizer = self.best_state = None

    # ---- early stopping and the time budget ---------------------------------------------------------------------
    def end_epoch(self, loss: float, val_map: float, seconds: float) -> None:
        """Counts the epoch that ran and logs it; keeps the model's state where its validation MAP@12 is the best so
        far, and otherwise counts one more epoch without improvement (`train.patience`)."""
        self.epoch += 1
        if val_map > self.best_map:
            self.best_map, self.best_epoch, self.bad_epochs = val_map, self.epoch, 0
            self.best_state = copy.deepcopy(self.model.state_dict())
        else:
            self.bad_epochs += 1
        self.log.append({"epoch": self.epoch, "loss": loss, "val_map@12": val_map, "seconds": round(seconds, 3),
                         "steps": self.last_steps})

    def restore_best(self) -> None:
        """The model takes the state of its best validation epoch."""
        self.model.load_state_dict(self.best_state)

    def start_clock(self) -> None:
        """Starts `train.max_minutes`, which counts the logged epochs of an interrupted run too: a resumed run whose
        budget is spent stops (the ranks agreeing), a fresh one trains at least one step."""
        if self.tc.max_minutes:
            self.deadline = time.perf_counter() + self.tc.max_minutes * 60 - sum(r["seconds"] for r in self.log)
            self.timed_out = self.epoch > 0 and self.dist.sum(float(self.out_of_time())) > 0

    def out_of_time(self) -> bool:
        return self.deadline is not None and time.perf_counter() >= self.deadline

    def finished(self) -> bool:
        return self.epoch >= self.tc.epochs or self.bad_epochs >= self.tc.patience or self.timed_out


def target_span(days: np.ndarray, target_days: int, min_targets: int) -> int:
    """Days of the `recent` supervision window: `target_days`, or more where that holds fewer than `min_targets` of
    the purchases `days` old (whole days, so no day is split; at most up to the newest half of the purchases)."""
    if not min_targets or len(days) < 2 or int((days < target_days).sum()) >= min_targets:
        return target_days
    k = max(1, min(min_targets, len(days) // 2))  # the k newest purchases end on the k-th smallest age
    return max(target_days, int(np.partition(days, k - 1)[k - 1]) + 1)


@torch.no_grad()
def validation_map(model: HeteroSAGE, c_emb: torch.Tensor, a_emb: torch.Tensor,
                   truth: WindowTruth, k: int = 12, chunk: int = 1024, bought: sp.csr_matrix | None = None,
                   own: OwnEdges | None = None) -> float:
    """MAP@k of the GNN's top-k of every article; with `bought` (customers x articles), the stored pairs are left
    out of each customer's ranking; `own`, the pairs bought as of the embeddings' day, for the own-edge term."""
    customers = truth.customers
    tops = []
    for s in range(0, len(customers), chunk):
        idx = torch.from_numpy(customers[s:s + chunk].astype(np.int64)).to(c_emb.device)
        scores = model.score_all(c_emb, a_emb, idx)
        if own is not None:
            own.add_to(scores, model, customers[s:s + chunk].astype(np.int64))
        if bought is not None:
            rows, cols, _ = csr_rows(bought, customers[s:s + chunk].astype(np.int64))
            scores[torch.from_numpy(rows).to(scores.device), torch.from_numpy(cols).to(scores.device)] = -torch.inf
        # exact on ties (the smaller article first): torch.topk's order among equal scores depends on the threads
        tops.append(top_k(scores, min(k, scores.shape[1]))[1].cpu().numpy())
    top = np.concatenate(tops) if tops else np.zeros((0, k), np.int64)
    return truth.map_at_k(top, k)


@dataclass
class RetrievalChoice:
    """How the GNN alone (`gnn-retrieval`) treats each customer's bought articles, chosen on the validation window
    (the two-stage `gnn` has its own bought source and reads the embeddings' scores only)."""

    drops_bought: bool
    """Leave them out (data where nobody buys the same article twice)."""
    head: list[float] | None
    """Or add a learned term of each bought pair's own edge (how often, how recently) to its score: the ID-GNN's
    mark of the customer's own neighbours, fit on the frozen embeddings; weights in `GNNScores.head_unit`s."""
    maps: dict[str, float]
    """Validation MAP@12 of each way: `keep`, `drop`, `head`."""

    def describe(self) -> str:
        figures = ", ".join(f"{k} {v:.4f}" for k, v in self.maps.items())
        way = ("leaves out each customer's bought articles" if self.drops_bought else
               "adds a learned term of each bought pair's own edge (times bought, recency) to its score"
               if self.head is not None else "keeps each customer's bought articles at their scores")
        return f"{way}: the best ranking of the validation window ({figures})" if figures else way


HEAD_L2 = 1e-4
"""Ridge on the retrieval head's weights: keeps them finite where the window's purchases separate perfectly."""


def fit_retrieval_head(model: HeteroSAGE, c_emb: torch.Tensor, a_emb: torch.Tensor, truth: WindowTruth,
                       own: OwnEdges, chunk: int = 256) -> torch.Tensor:
    """[OWN_BASIS] weights of a term added to the GNN's score of each pair the customer bought before, fit on the
    frozen embeddings: the softmax likelihood, over every article, of the window's purchases (each customer
    weighing alike, as MAP does). Only the bought pairs' scores move, so the softmax's other terms are each
    customer's log-sum-exp over the articles not bought, computed once."""
    customers = truth.customers
    device = c_emb.device
    with torch.no_grad():
        rest = []
        for s in range(0, len(customers), chunk):
            rows = customers[s:s + chunk]
            scores = model.score_all(c_emb, a_emb, torch.from_numpy(rows).to(device)).float()
            r, a, _ = csr_rows(own.times, rows)
            scores[torch.from_numpy(r).to(device), torch.from_numpy(a).to(device)] = -torch.inf
            rest.append(torch.logsumexp(scores, 1).double())  # float32 is exact enough: it subtracts the max
        rest_lse = torch.cat(rest) if rest else torch.zeros(0, dtype=torch.float64, device=device)
        r, a, times = csr_rows(own.times, customers)
        last = csr_rows(own.last, customers)[2]
        own_basis = own.basis(times, last, device).double()
        own_dot = model.score(c_emb, a_emb, torch.from_numpy(customers[r]).to(device),
                              torch.from_numpy(a).to(device)).double()
        own_row = torch.from_numpy(r).to(device)
        tc, ta = truth.bought_customers, truth.bought_articles
        t_row = torch.from_numpy(np.searchsorted(customers, tc)).to(device)
        t_dot = model.score(c_emb, a_emb, torch.from_numpy(tc).to(device), torch.from_numpy(ta).to(device)).double()
        at = stored_at(own.times, tc, ta)
        hit = np.flatnonzero(at >= 0)
        t_basis = torch.zeros(len(tc), own_basis.shape[1], dtype=torch.float64, device=device)
        if len(hit):
            t_basis[torch.from_numpy(hit).to(device)] = own.basis(own.times.data[at[hit]], own.last.data[at[hit]],
                                                                  device).double()
        per_customer = torch.bincount(t_row, minlength=len(customers)).clamp_min(1).double()
        t_weight = 1.0 / per_customer[t_row]
    n = max(len(customers), 1)
    w = torch.zeros(own_basis.shape[1], dtype=torch.float64, device=device, requires_grad=True)
    optimizer = torch.optim.LBFGS([w], lr=1.0, max_iter=200, line_search_fn="strong_wolfe")

    def loss() -> torch.Tensor:
        optimizer.zero_grad()
        x = own_dot + own_basis @ w
        top = rest_lse.clone().scatter_reduce_(0, own_row, x.detach(), "amax")  # a shift that keeps exp() finite
        total = torch.exp(rest_lse - top).index_add(0, own_row, torch.exp(x - top[own_row]))
        log_z = top + torch.log(total)
        value = (log_z.sum() - (t_weight * (t_dot + t_basis @ w)).sum()) / n + HEAD_L2 * (w * w).sum()
        value.backward()
        return value

    if len(customers) and len(r):
        optimizer.step(loss)
    return w.detach().float()


def choose_retrieval(trainer: Trainer) -> RetrievalChoice:
    """How the GNN alone ranks each customer's bought articles: as scored, left out, or with the own-edge head
    (`fit_retrieval_head`), whichever ranks the validation window best. A model trained with its own-edge term
    (`train.own_edges`) has that term already and chooses between keeping and leaving out only."""
    model, truth = trainer.model, trainer.val_truth
    c_emb, a_emb = trainer.embeddings_for_validation()  # one message pass for the three rankings

    def ranked(**kwargs: Any) -> float:
        return validation_map(model, c_emb, a_emb, truth, **kwargs)

    maps = {"keep": ranked(own=trainer.val_own),
            "drop": ranked(own=trainer.val_own, bought=trainer.data.history.user_items())}
    head = None
    if not model.own_edges:
        own = OwnEdges.of(trainer.data.history, trainer.data.history_end)
        weights = fit_retrieval_head(model, c_emb, a_emb, truth, own)
        maps["head"] = ranked(own=own.with_weights(weights))
        head = (weights / GNNScores(model, c_emb, a_emb, c_emb.device).head_unit(own)).tolist()
    best = max(maps, key=lambda k: (maps[k], k == "keep"))  # ties: the plain scores
    return RetrievalChoice(best == "drop", head if best == "head" else None, maps)


# ---- the step ------------------------------------------------------------------------------------------------
def _run_key(cfg: Config, inputs: list[Path]) -> str:
    blob = json.dumps([cfg.section("train"), [(i["bytes"], i["fingerprint"]) for i in artifacts.describe_inputs(inputs)]],
                      sort_keys=True, default=str)
    return hashlib.blake2b(blob.encode(), digest_size=16).hexdigest()


def _save_state(path: Path, state: dict[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    artifacts.save_torch(state, path)  # a kill mid-write leaves the previous state intact


@distributed.launched  # under `torchrun --nproc-per-node N`: one rank of a data-parallel run
def run(cfg: Config, inp: Path | None = None, out: Path | None = None, force: bool = False) -> Path:
    """Train on <workdir>/split + <workdir>/graph; write model.pt, the training log and the curve plot."""
    # same seed, same model in every process: without this, multi-threaded CPU kernels accumulate gradients in an
    # order that depends on thread timing, and two runs of one config would end with different parameters
    previous = torch.are_deterministic_algorithms_enabled()
    torch.use_deterministic_algorithms(True, warn_only=True)
    try:
        path = _train(cfg, inp, out, force)
    finally:
        torch.use_deterministic_algorithms(previous)
    _store_answers(cfg, path)
    return path


def _store_answers(cfg: Config, path: Path) -> None:
    """With `recommend.precompute`, every customer's answer from the default model, stored beside it for
    `recommend --customer-id` (hmgnn/answers.py)."""
    if cfg.train.recipe == "gnn" and Path(path) == model_dir(cfg) and distributed.current().is_main:
        from hmgnn import recommend

        recommend.store_answers(cfg, "train")


def _train(cfg: Config, inp: Path | None, out: Path | None, force: bool) -> Path:
    """The train step in its phases: the inputs, the GNN's training, the GNN that recommends, the rankers, the
    model folder."""
    started = time.perf_counter()
    tc = cfg.train.resolved()
    paths = TrainPaths.of(cfg, inp, out)
    # a model.pt whose fields are not this version's Checkpoint's is retrained, whatever else the manifest says
    readable = (artifacts.read_manifest(paths.out) or {}).get("checkpoint_fields") == CHECKPOINT_FIELDS
    if artifacts.skip_if_current(paths.out, "train", cfg.section("train"), paths.inputs, force or not readable):
        return paths.out

    device = resolve_device(tc.device)
    data = load_training_data(paths.graph, paths.split, paths.tables)
    purchases = Interactions.concat([data.history, data.validation])  # what the ranker's windows read
    windows = None
    if tc.recipe == "gnn":
        windows = label_windows(purchases, data.history_end, data.val_end, cfg.ranker)
        data.train_end = windows[-1].as_of  # no label window's purchases are ever the GNN's targets
        info(f"[green]train[/green]: the GNN learns from purchases up to {data.train_end}; the ranker from "
             f"{len(windows)} label window(s) after it")
    trainer = Trainer(tc, cfg.seed, data, device)
    key = _run_key(cfg, paths.inputs)
    _fit_gnn(trainer, tc, paths.state, key, force)

    trainer.restore_best()
    retrieval = choose_retrieval(trainer) if trainer.dist.is_main else RetrievalChoice(False, None, {})
    trainer.release()
    final, refit = _recommending_gnn(trainer, tc, cfg.seed, data, purchases, windows, device)
    if not trainer.dist.is_main:
        return paths.out  # torchrun: rank 0 alone fits the ranker and writes `out`; the others wait for it at a barrier

    fit = _fit_rankers(cfg, tc, trainer, data, purchases, windows, paths.split, device)
    validation = (fit.report or {}).get("validation") or {}
    auto = validation.get("auto", "gnn")
    if validation.get("customers"):
        _say_validation(validation)
    sizes = _write(cfg, tc, paths, started, data, trainer, final, refit, retrieval, fit, auto)
    shutil.rmtree(paths.state.parent, ignore_errors=True)
    info(f"[green]train[/green]: {paths.out} holds {sum(sizes.values()) / 2**20:,.1f} MiB and loads on its own "
         f"(hmgnn recommend --model-dir {paths.out}); sizes in its README.md")
    return paths.out


@dataclass(frozen=True)
class TrainPaths:
    """Where the train step reads and writes: its input folders (checked to be there and to fit together), the
    files whose change makes it due again, the model folder and the resumable state beside it."""

    split: Path
    graph: Path
    tables: Path
    inputs: list[Path]
    out: Path
    state: Path

    @classmethod
    def of(cls, cfg: Config, inp: Path | None, out: Path | None) -> TrainPaths:
        workdir = Path(cfg.workdir)
        split_dir = Path(inp) if inp else workdir / artifacts.SPLIT
        graph_dir = workdir / artifacts.GRAPH
        tables_dir = workdir / artifacts.TABLES
        out = Path(out) if out else model_dir(cfg)
        artifacts.require(graph_dir, [artifacts.GRAPH_PT, artifacts.FEATURE_NAMES], artifacts.GRAPH)
        artifacts.require(split_dir, [artifacts.HISTORY_PARQUET, artifacts.VALIDATION_PARQUET], artifacts.SPLIT)
        artifacts.require(tables_dir, [artifacts.TRANSACTIONS_PARQUET, artifacts.ARTICLES_PARQUET,
                                       artifacts.CUSTOMERS_PARQUET], artifacts.TABLES)
        artifacts.check_lineage([tables_dir, graph_dir, split_dir])  # tables -> graph -> split fit together
        inputs = [graph_dir / artifacts.GRAPH_PT, graph_dir / artifacts.FEATURE_NAMES,
                  split_dir / artifacts.HISTORY_PARQUET, split_dir / artifacts.VALIDATION_PARQUET,
                  tables_dir / artifacts.ARTICLES_PARQUET, tables_dir / artifacts.CUSTOMERS_PARQUET,
                  tables_dir / artifacts.TRANSACTIONS_PARQUET]  # the last three also copied into the model folder
        if (split_dir / artifacts.VALIDATION_PAIRS_PARQUET).is_file():  # they choose the non-candidates' score mix
            inputs.append(split_dir / artifacts.VALIDATION_PAIRS_PARQUET)
        return cls(split_dir, graph_dir, tables_dir, inputs, out, out.parent / f".{out.name}.partial" / STATE_PT)


def _fit_gnn(trainer: Trainer, tc: TrainConfig, state_path: Path, key: str, force: bool) -> None:
    """The GNN's epochs until early stopping, the time budget or `train.epochs`, resumed from `state_path` where an
    interrupted run of the same inputs and settings (`key`) left it, and saved there after each epoch."""
    if state_path.exists() and not force:
        state = trainer.dist.load(state_path)
        if state.get("key") == key:
            trainer.load_state(state)
            info(f"[yellow]train[/yellow]: resuming from epoch {trainer.epoch} ({state_path})")
    info(f"[green]train[/green]: {trainer.model!r} on {trainer.device}, {trainer.steps_per_epoch()} steps/epoch, "
         f"{len(trainer.val_truth.customers)} validation customers")
    trainer.dist.check_in_sync(trainer)  # torchrun: every rank starts from the same (resumed) state

    trainer.start_clock()
    out_of_time = trainer.out_of_time if tc.max_minutes else None
    steps = trainer.steps_per_epoch()
    with progress(unit="steps") as bar:  # per optimisation step; the total (and time left) assumes no early stop
        task = bar.add_task("epoch 1", total=tc.epochs * steps, completed=trainer.epoch * steps)
        while not trainer.finished():
            t0 = time.perf_counter()
            loss = trainer.train_epoch(on_step=lambda: bar.advance(task), out_of_time=out_of_time)
            val_map = trainer.dist.validate(trainer)  # torchrun: rank 0's, broadcast
            trainer.end_epoch(loss, val_map, time.perf_counter() - t0)
            if trainer.dist.is_main:
                _save_state(state_path, trainer.state(key))
            line = f"epoch {trainer.epoch} loss {loss:.4f} val MAP@12 {val_map:.4f} (best {trainer.best_map:.4f})"
            if trainer.timed_out:
                line += (f"; train.max_minutes = {tc.max_minutes:g} spent after {trainer.last_steps} of "
                         f"{trainer.steps_per_epoch()} steps")
            bar.update(task, completed=trainer.epoch * steps, description=line)
            if not console.is_terminal and trainer.dist.is_main:
                info(f"train: {line}")  # a log file gets one line per epoch (a bar redraws only on a terminal)


def _recommending_gnn(trainer: Trainer, tc: TrainConfig, seed: int, data: TrainingData, purchases: Interactions,
                      windows: list | None, device: torch.device) -> tuple[HeteroSAGE, dict[str, Any] | None]:
    """The GNN that recommends, and how it was refit (None: it is the first one, `trainer.model`)."""
    if tc.refit == "always" or (tc.refit == "auto" and windows is not None and len(windows) > 1):
        # the first GNN's training ends before the earliest label window; the one that recommends learns from
        # every purchase up to the test, for the epoch count early stopping chose
        out_of_time = trainer.out_of_time if tc.max_minutes else None
        final, refit = _refit(tc, seed, data, purchases, device, trainer.best_epoch, out_of_time)
        if final is None:
            info(f"[yellow]train[/yellow]: no refit ({refit['skipped']}); the first GNN recommends")
            final = trainer.model
        return final, refit
    return trainer.model, None


@dataclass
class RankerFit:
    """The rankers `hmgnn train` fits over the first GNN's scores (none for the reference recipe): the `gnn`'s,
    `ranker-only`'s, the fit's report, and the non-candidates' weight of recent sales against the GNN's percentile."""

    ranker: Any = None
    ranker_only: Any = None
    report: dict[str, Any] | None = None
    rest_mix: float = 0.5


def _fit_rankers(cfg: Config, tc: TrainConfig, trainer: Trainer, data: TrainingData, purchases: Interactions,
                 windows: list | None, split_dir: Path, device: torch.device) -> RankerFit:
    """The rankers on the label windows, each candidate scored by the first GNN as of its window's day."""
    fit = RankerFit()
    if windows is None:
        return fit
    model = trainer.model.eval()
    gnn_as_of = ranker_scores(model, tc.recipe, tc.time_features, data.customer_x, data.article_x, device,
                              edge_half_life=tc.edge_half_life)
    try:
        fit.ranker, fit.ranker_only, fit.report = fit_ranker(purchases, windows, data.meta, cfg.ranker, gnn_as_of,
                                                             cfg.seed)
    except ValueError as exc:
        raise InputError(f"{split_dir}: the ranker cannot be fit ({exc}); move sample.cutoff or lengthen "
                         "sample.val_days") from None
    pairs_path = split_dir / artifacts.VALIDATION_PAIRS_PARQUET
    if pairs_path.is_file():  # the binary metrics' pairs of the validation window choose the non-candidates' mix
        pairs = pl.read_parquet(pairs_path).filter(pl.col("kind").is_in(artifacts.BINARY_KINDS))
        fit.rest_mix, fit.report["rest_mix"] = choose_rest_mix(purchases, windows[0], data.meta, cfg.ranker,
                                                               gnn_as_of, pairs, cfg.seed)
    return fit


def _write(cfg: Config, tc: TrainConfig, paths: TrainPaths, started: float, data: TrainingData, trainer: Trainer,
           final: HeteroSAGE, refit: dict[str, Any] | None, retrieval: RetrievalChoice, fit: RankerFit,
           auto: str) -> dict[str, int]:
    """The model folder, whole or not at all: model.pt (a `Checkpoint`), the data it recommends from, the
    training log and curve, the ranker's report, the model card and the manifest; returns each file's size."""
    ranker, ranker_only, ranker_report = fit.ranker, fit.ranker_only, fit.report
    with artifacts.StepOutput(paths.out, "train", cfg.to_dict(), cfg.section("train"), paths.inputs,
                              started=started) as so:
        # the data it recommends from, copied beside model.pt: the folder loads without the workdir
        files = portable.write(so.dir, paths.tables, data.customer_x, data.article_x)
        checkpoint = Checkpoint(
            recipe=tc.recipe, model_args=trainer.model.model_args,
            state_dict={k: v.cpu() for k, v in final.state_dict().items()},
            train_config=tc.__dict__, config=cfg.to_dict(), seed=cfg.seed,
            feature_names=data.feature_names, time_features=tc.time_features,
            graph_fingerprint=artifacts.fingerprint(paths.graph / artifacts.GRAPH_PT),
            ranker=ranker.to_dict() if ranker else None,  # ranks each customer's candidates
            ranker_only=ranker_only.to_dict() if ranker_only else None,  # the same fit without the GNN
            auto=auto,  # the model that ranked the held-out label customers best: `recommend.model = auto`
            candidate_sizes=cfg.ranker.sizes(),
            gnn_recent_days=cfg.ranker.gnn_recent_days,
            retrieval_drops_bought=retrieval.drops_bought,
            retrieval_head=retrieval.head,  # the GNN alone's own-edge weights, in units of its scores' spread
            rest_mix=fit.rest_mix,  # the non-candidates' weight of recent sales against the GNN's percentile
            article_meta=data.meta.to_dict(),  # the pair features' article categories
            best_epoch=trainer.best_epoch, validation_map=trainer.best_map,
            refit=refit,  # None, or how the recommending GNN was refit on every purchase
            files=files,  # the copied data's fingerprints: a model folder loads only with its own files
            updates=[],  # `hmgnn update` appends one record each
        )
        # plain data: loads with weights_only=True
        artifacts.save_torch(checkpoint.to_dict(), so.dir / artifacts.MODEL_PT)
        pl.DataFrame(trainer.log).write_csv(so.dir / artifacts.TRAIN_LOG)
        if ranker_report:
            (so.dir / RANKER_JSON).write_text(json.dumps(ranker_report, indent=1))
        _plot(trainer.log, so.dir / CURVE_PNG)
        sizes = {p.name: p.stat().st_size for p in sorted(so.dir.iterdir()) if p.is_file()}
        artifacts.atomic_write_text(so.dir / MODEL_CARD,
                                    _model_card(cfg, tc, data, trainer, ranker_report, refit, paths.out, sizes,
                                               retrieval))
        so.rows = {"epochs": trainer.epoch, "best_epoch": trainer.best_epoch,
                   "validation_customers": len(trainer.val_truth.customers)}
        so.extra["steps_per_epoch"] = trainer.steps_per_epoch()
        so.extra["validation"] = {"gnn_map@12": trainer.best_map}
        so.extra["refit"] = refit
        so.extra["checkpoint_fields"] = CHECKPOINT_FIELDS
        so.extra["auto"] = auto  # read by `hmgnn.registry.resolve_model_name` without loading model.pt
        if ranker_report:
            so.extra["ranker"] = {k: v for k, v in ranker_report.items() if k != "importance"}
    return sizes


def _refit(tc: TrainConfig, seed: int, data: TrainingData, purchases: Interactions, device: torch.device,
           epochs: int, out_of_time=None) -> tuple[HeteroSAGE | None, dict[str, Any]]:
    """A fresh GNN (same seed) trained for `epochs` on every purchase up to the end of validation; None (and why)
    where the time budget does not allow all of them, since a partly trained GNN is worse than the first one."""
    started = time.perf_counter()
    dist = distributed.current()
    if out_of_time is not None and dist.sum(float(out_of_time())) > 0:
        return None, {"skipped": "train.max_minutes spent before the refit"}
    every = dataclasses.replace(data, history=purchases, history_end=data.val_end, train_end=data.val_end)
    second = Trainer(tc, seed, every, device, validate=False)
    with progress(unit="steps") as bar:
        steps = second.steps_per_epoch()
        task = bar.add_task("refit", total=epochs * steps)
        for epoch in range(1, epochs + 1):
            loss = second.train_epoch(on_step=lambda: bar.advance(task), out_of_time=out_of_time)
            if second.timed_out:
                return None, {"skipped": f"train.max_minutes ran out in refit epoch {epoch} of {epochs}"}
            line = f"refit epoch {epoch}/{epochs} loss {loss:.4f}"
            bar.update(task, completed=epoch * steps, description=line)
            if not console.is_terminal and second.dist.is_main:
                info(f"train: {line}")
    return second.model.eval(), {"through": data.val_end.isoformat(), "epochs": epochs,
                                 "seconds": round(time.perf_counter() - started, 1)}


def _model_card(cfg: Config, tc: TrainConfig, data: TrainingData, trainer: Trainer,
                ranker_report: dict[str, Any] | None, refit: dict[str, Any] | None, out: Path,
                sizes: dict[str, int], retrieval: RetrievalChoice) -> str:
    """model/README.md: what the model is, what data and windows it learned from, how well, how to load it."""
    h = data.history
    lines = [
        f"# hmgnn model ({tc.recipe})", "",
        f"Trained by hmgnn {__version__} with seed {cfg.seed} from the workdir `{cfg.workdir}`: "
        f"{h.n_customers:,} customers, {h.n_articles:,} articles, {len(h):,} history purchases up to "
        f"{data.history_end} and {len(data.validation):,} validation purchases up to {data.val_end}.", "",
        "## What it is", "",
        f"- A {tc.layers}-layer heterogeneous GraphSAGE of width {tc.hidden} ({tc.loss} loss, "
        f"{'with' if tc.id_embeddings else 'without'} ID embeddings, time features {'on' if tc.time_features else 'off'}),"
        f" trained on purchases up to {trainer.train_end}{_targets(tc, trainer)}; early stopping kept epoch "
        f"{trainer.best_epoch} "
        f"(validation MAP@12 of the GNN alone {trainer.best_map:.4f}).",
    ]
    lines.append(f"- The GNN alone (`--model gnn-retrieval`) {retrieval.describe()}.")
    if refit and "skipped" in refit:
        lines.append(f"- No refit: {refit['skipped']}; the GNN above recommends.")
    elif refit:
        lines.append(f"- Refit: the GNN that recommends was trained again on every purchase up to "
                     f"{refit['through']} for {refit['epochs']} epoch(s).")
    if ranker_report and "rest_mix" in ranker_report:
        chosen = ranker_report["rest_mix"]
        lines.append(f"- Articles that are no candidate rank below every candidate, by "
                     f"{chosen.get('rest_mix', 0.5):.1f} x their recent-sales percentile + the rest x the GNN's "
                     "percentile for the customer (the mix with the best AUC on the validation window's 1:1 pairs; "
                     "`ranker.json`).")
    if ranker_report:
        windows = ranker_report["windows"]
        recall = ", ".join(f"{w['as_of']}: {w['recall']['all']:.3f}" for w in windows)
        lines.append(f"- A LightGBM {cfg.ranker.objective} ranker ({ranker_report.get('trees', cfg.ranker.trees)} "
                     f"trees of {ranker_report.get('leaves', cfg.ranker.leaves)} leaves) over the candidates of "
                     f"each customer, fit on {ranker_report['rows']:,} rows of {ranker_report['groups']:,} customers "
                     f"in {len(windows)} label window(s); candidate recall per window (as of): {recall}.")
        top = list(ranker_report["importance"])[:8]
        lines.append(f"- The ranker's most used features: {', '.join(top)}.")
        lines += _validation_lines(ranker_report.get("validation") or {})
    lines += ["", "## How to use it", "",
              "This folder is self-contained: copied anywhere, without the workdir, it loads and gives the answers "
              "the workdir gives (it holds the node features, purchases and id maps that recommending reads).", "",
              "```bash", f"hmgnn recommend --model-dir {out} --customer-id <64-hex id>",
              f"hmgnn recommend --model-dir {out} --all --out submission.csv", f"hmgnn serve --model-dir {out}",
              "```", "",
              "```python", "import hmgnn", f"rec = hmgnn.load({str(out)!r})", "rec.recommend([\"<64-hex id>\"], k=12)",
              "```", "",
              f"In its workdir, `-w {cfg.workdir}` (or `hmgnn.load({str(cfg.workdir)!r})`) loads the same model from "
              "graph/ and tables/. `hmgnn evaluate` there measures it on the test window.", "",
              "## Files", "", "| file | bytes | what |", "|---|---|---|"]
    lines += [f"| `{name}` | {size:,} | {_FILES.get(name, '')} |" for name, size in sizes.items()]
    lines += [f"| total | {sum(sizes.values()):,} | (and this card, `manifest.json`: the full config, the inputs' and "
              "these files' fingerprints) |", ""]
    return "\n".join(lines)


def _validation_lines(v: dict[str, Any]) -> list[str]:
    """The model card's words on the held-out label customers: the GNN's contribution, the best baseline, `auto`."""
    if not v.get("customers"):
        return [f"- No held-out comparison: {v.get('skipped', 'ranker.holdout = 0')}."]
    maps = v["map@12"]
    lines = [f"- On {v['customers']:,} held-out label customers (MAP@12): gnn {maps['gnn']:.4f}, "
             + ", ".join(f"{n} {m:.4f}" for n, m in maps.items() if n != "gnn") + "."]
    if "gnn_vs_ranker_only" in v:
        low, high = v["gnn_vs_ranker_only_ci95"]
        lines.append(f"- The GNN's contribution: gnn / ranker-only (the same ranker without the GNN's candidates and "
                     f"features) {v['gnn_vs_ranker_only']:.3f}x (95% interval {low:.3f}..{high:.3f}).")
    if v["auto"] != "gnn":
        lines.append(f"- **Warning: the gnn ranked the held-out customers worse than `{v['best_baseline']}` "
                     f"({v['gnn_vs_best_baseline']:.3f}x)**, so `recommend.model = auto` answers with "
                     f"`{v['auto']}`; `--model gnn` still asks for the gnn.")
    else:
        lines.append(f"- `recommend.model = auto` answers with the gnn: {v['gnn_vs_best_baseline']:.3f}x the best "
                     f"baseline, `{v['best_baseline']}`, on the held-out customers.")
    return lines


def _say_validation(v: dict[str, Any]) -> None:
    """train's lines on the held-out label customers (and a warning where a baseline beat the gnn there)."""
    maps = v["map@12"]
    line = (f"train: held-out label customers ({v['customers']:,}): gnn MAP@12 {maps['gnn']:.4f}, "
            f"{v['best_baseline']} {maps[v['best_baseline']]:.4f} ({v['gnn_vs_best_baseline']:.3f}x)")
    if "gnn_vs_ranker_only" in v:
        line += f"; the GNN's contribution {v['gnn_vs_ranker_only']:.3f}x ranker-only"
    info(line)
    if v["auto"] != "gnn":
        info(f"[yellow]warning[/yellow]: the gnn ranks the held-out customers below `{v['best_baseline']}`; "
             f"`recommend.model = auto` answers with `{v['auto']}` (`--model gnn` still asks for the gnn)")


def _targets(tc: TrainConfig, trainer: Trainer) -> str:
    """The model card's words on the supervision window."""
    if tc.supervision != "recent":
        return f" (targets: a random {tc.disjoint_ratio:.0%} of them each epoch)"
    return f" (targets: the last {trainer.target_days} days' purchases)"


_FILES = {
    artifacts.MODEL_PT: "weights, model arguments, ranker trees, article categories, config (tensors and plain data)",
    artifacts.FEATURES_PT: "static node features of graph.pt, distinct rows in CSR form (`hmgnn.portable`)",
    artifacts.TRANSACTIONS_PARQUET: "the purchases it recommends from: customer_index, article_index, t_dat",
    artifacts.CUSTOMERS_PARQUET: "customer id map: customer_index, customer_id, age (the fallback's age band)",
    artifacts.ARTICLES_PARQUET: "article id map and the fields shown: article_id, prod_name, product type, colour",
    RANKER_JSON: "the ranker's windows, candidate recall per source, feature gains",
    artifacts.TRAIN_LOG: "loss and validation MAP@12 per epoch",
    CURVE_PNG: "loss and validation MAP@12 per epoch, plotted",
}
"""What each file of the model folder holds, for the model card."""


def _plot(log: list[dict[str, Any]], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    epochs = [r["epoch"] for r in log]
    fig, ax = plt.subplots(1, 2, figsize=(9, 3.2))
    ax[0].plot(epochs, [r["loss"] for r in log], marker="o")
    ax[0].set(title="training loss", xlabel="epoch")
    val = [r["val_map@12"] for r in log]
    ax[1].plot(epochs, val, marker="o", color="tab:green")
    if val:  # the checkpoint kept: the first epoch with the best validation MAP@12
        best = int(np.argmax(val))
        for a in ax:
            a.axvline(epochs[best], color="grey", lw=0.8, ls=":")
        ax[1].annotate(f"best: epoch {epochs[best]}", (epochs[best], val[best]), xytext=(4, -12),
                       textcoords="offset points", fontsize=8, color="grey")
    ax[1].set(title="validation MAP@12 (GNN alone)", xlabel="epoch")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)

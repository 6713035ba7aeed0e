"""Candidate sources: per customer, a few hundred articles worth ranking, each tagged with the sources it came from.

Each source is a small function of a `Snapshot` (the purchases up to a day) and the customers; `candidate_pairs`
merges them into one (customer, article, source bits) list. The GNN's own source is its top-N by score, read from
`GNNScores`, which also gives the ranker the GNN's score and z-score of every pair.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, fields
from typing import Any, Callable

import numpy as np
import scipy.sparse as sp
import torch
from scipy.stats import rankdata

from hmgnn.models.base import AGE_BANDS, age_band, band_sales, csr_rows, in_parallel, position_in_run, stored_at, top_k
from hmgnn.models.baselines import TREND_DAYS
from hmgnn.models.gnn import HeteroSAGE
from hmgnn.models.itemgraph import RP3Beta
from hmgnn.models.node_inputs import OwnEdges
from hmgnn.models.reasons import BEYOND, BOUGHT, GNN, POPULAR, TRENDING, VARIANT, WALK, Reason, strongest
from hmgnn.ranking.features import Snapshot

SOURCES = (GNN, BOUGHT, VARIANT, POPULAR, TRENDING, WALK)
"""The candidate sources, in the order of their bits in `CandidatePairs.sources` (and of the `from_*` features)."""
WALK_BETA = 0.5
SMALL_BATCH, BLOCK = 64, 8
"""Up to SMALL_BATCH customers, the GNN's scores are computed in blocks of exactly BLOCK customers (the last one
padded): a customer's answer is then the same bit for bit whoever shares the batch (products of other shapes run
other BLAS kernels, whose sums differ in the last bit), which lets `serve` rank its waiting requests together."""
KEEP_CHUNK = 4096
"""Customers per task when `GNNScores.keep_top` computes every customer's top-N."""
RECENT_ARTICLES = 5
"""A candidate's GNN embedding is compared with the embeddings of this many of the customer's most recently bought
articles (the pair features `gnn_recent_max` and `gnn_recent_mean`)."""
PAIR_CHUNK = 1 << 15
"""Pairs compared with the recent purchases at once (bounds the [pairs, RECENT_ARTICLES, dim] product)."""
TOP_CHUNK = 1 << 22
"""Scores computed at once for a top-N (16 MB of float32): small enough to stay in the caches and for the memory
allocator to reuse, large enough for an efficient product."""


def top_per_row(rows: np.ndarray, cols: np.ndarray, values: np.ndarray, n: int) -> np.ndarray:
    """Mask of the `n` largest values of each row (ties: the smaller column) among (row, col, value) entries."""
    if not len(rows):
        return np.zeros(0, bool)
    order = np.lexsort((cols, -values, rows))
    keep = np.zeros(len(rows), bool)
    keep[order[position_in_run(rows[order]) < n]] = True
    return keep


def top_columns(scores: torch.Tensor, n: int) -> torch.Tensor:
    """[rows, n] columns of each row's n largest scores, in column order; the same set as `top_k`'s (score desc,
    column asc: exact on ties). Found through groups of g consecutive columns: the n best lie in the n groups with
    the largest maxima (ties to the smaller group), so only those n x g scores are sorted, with g about
    sqrt(columns / n), which makes both sorts short. NaN counts as -inf."""
    rows, cols = scores.shape
    n = min(n, cols)
    g = int((cols / max(n, 1)) ** 0.5)
    groups = cols // g if g > 1 else 0
    if groups <= n or scores.stride(1) != 1:
        return top_k(scores, n)[1].sort(1).values
    main = scores[:, :groups * g].view(rows, groups, g)
    maxima = main.amax(2)
    if maxima.isnan().any():  # amax propagates NaN: a group's other scores would be lost
        return top_k(scores, n)[1].sort(1).values
    best = top_k(maxima, n)[1].sort(1).values
    cand = main.gather(1, best[:, :, None].expand(rows, n, g)).reshape(rows, n * g)
    cand_cols = (best[:, :, None] * g + torch.arange(g, device=scores.device)).reshape(rows, n * g)
    if groups * g < cols:  # the last columns, short of a group, are always in (after every group: column order kept)
        cand = torch.cat([cand, scores[:, groups * g:]], 1)
        cand_cols = torch.cat([cand_cols, torch.arange(groups * g, cols, device=scores.device).expand(rows, -1)], 1)
    return cand_cols.gather(1, top_k(cand, n)[1]).sort(1).values


class GNNScores:
    """The GNN's scores for chunks of customers: every article's (for its top-N), any pair's, and each customer's
    mean and spread over all articles (the z-scores the ranker and the non-candidates' scores use).

    With the dot decoder a customer's scores are `c . a` over the article embeddings `a`, so the mean is
    `c . mean(a)` and the variance `c^T cov(a) c`: two small products instead of a pass over every article.

    A model with the own-edge term (`HeteroSAGE.own_edges`) adds it to the pairs each customer bought before
    (`own`); the moments then add its few sparse terms to the dot products' closed form.

    Args:
        model: the GNN (its decoder scores pairs).
        customer_emb, article_emb: its embeddings after one message pass.
        device: where the scores are computed.
        own: the pairs bought up to the message pass's as-of day, for a model with the own-edge term or with a
            retrieval head's weights (`OwnEdges.with_weights`); None scores its embeddings alone (what the ranker
            reads: its own features carry the customer's purchases).
    """

    def __init__(self, model: HeteroSAGE, customer_emb: torch.Tensor, article_emb: torch.Tensor,
                 device: torch.device, own: OwnEdges | None = None) -> None:
        self.model, self.customer_emb, self.article_emb, self.device = model, customer_emb, article_emb, device
        self.own = own if own is not None and (model.own_edges or own.has_term) else None
        self._mean = self._cov = None
        self._listed: tuple[np.ndarray, torch.Tensor] | None = None  # the last article list's embeddings
        self._kept: tuple[int, np.ndarray | None, np.ndarray] | None = None  # see `keep_top`
        self._unit: torch.Tensor | None = None  # the article embeddings scaled to unit length, when first needed
        if model.mlp is None:  # float64: the products sum over every article
            a = article_emb.double()
            self._mean = a.mean(0)
            centred = a - self._mean
            self._cov = centred.T @ centred / max(len(a) - 1, 1)

    def _index(self, customers: np.ndarray) -> torch.Tensor:
        return torch.from_numpy(np.asarray(customers, np.int64)).to(self.device)

    @staticmethod
    def _in_blocks(f: Callable[[np.ndarray], Any], customers: np.ndarray) -> Any:
        """f(customers) (tensors, or a tuple of them, with a row per customer), in blocks of BLOCK customers for up
        to SMALL_BATCH customers (see there)."""
        if len(customers) > SMALL_BATCH or not len(customers):
            return f(customers)
        parts = []
        for s in range(0, len(customers), BLOCK):
            block = customers[s:s + BLOCK]
            out = f(np.concatenate([block, np.repeat(block[:1], BLOCK - len(block))]))  # padded with its first
            parts.append(tuple(o[:len(block)] for o in out) if isinstance(out, tuple) else out[:len(block)])
        if isinstance(parts[0], tuple):
            return tuple(torch.cat(p) for p in zip(*parts))
        return torch.cat(parts)

    def _article_emb(self, articles: np.ndarray | None) -> torch.Tensor:
        """The embeddings of the listed articles (all without a list), gathered once per list: a list is the same
        array object on every call (a snapshot caches it), and gathering it again would cost one request more than
        its scores."""
        if articles is None:
            return self.article_emb
        if self._listed is None or self._listed[0] is not articles:
            self._listed = (articles, self.article_emb[self._index(articles)].contiguous())
        return self._listed[1]

    def _scores(self, customers: np.ndarray, article_emb: torch.Tensor,
                articles: np.ndarray | None = None) -> torch.Tensor:
        """[customers, articles] scores against `article_emb` (the embeddings of `articles`, sorted; all without)."""
        scores = self.model.score_all(self.customer_emb, article_emb, self._index(customers)).float()
        return scores if self.own is None else self.own.add_to(scores, self.model, customers, articles)

    @torch.no_grad()
    def dense(self, customers: np.ndarray, articles: np.ndarray | None = None) -> torch.Tensor:
        """[len(customers), n_articles] scores, or [len(customers), len(articles)] against the listed articles."""
        customers = np.asarray(customers)
        article_emb = self._article_emb(articles)
        return self._in_blocks(lambda c: self._scores(c, article_emb, articles), customers)

    @torch.no_grad()
    def top(self, customers: np.ndarray, n: int, articles: np.ndarray | None = None,
            scores: torch.Tensor | None = None) -> tuple[np.ndarray, np.ndarray]:
        """(row, article) of each customer's n best-scored articles among `articles` (sorted; every article without
        a list), by row then article; ties to the smaller article. The scores are computed TOP_CHUNK at a time and
        dropped once their top-n is known: a chunk's scores stay in the caches and their memory is reused, where a
        batch's whole [customers, articles] block would be written out to memory and read back. `scores`, the
        customers' dense rows over every article where already computed."""
        customers = np.asarray(customers)
        article_emb = self._article_emb(articles)
        n = min(n, len(article_emb))
        if not len(customers) or n <= 0:
            return np.zeros(0, np.int64), np.zeros(0, np.int64)
        kept = self._kept
        if kept is not None and kept[0] == n and kept[1] is articles:
            top = kept[2][customers]
            if (top >= 0).all():
                return np.repeat(np.arange(len(customers)), n), top.ravel().astype(np.int64)

        if scores is not None:
            top = top_columns(scores if articles is None else scores[:, self._index(articles)], n)
        elif len(customers) <= SMALL_BATCH:  # the padding rows of `_in_blocks` are dropped before the search
            top = top_columns(self._in_blocks(lambda c: self._scores(c, article_emb, articles), customers), n)
        else:
            step = max(1, TOP_CHUNK // len(article_emb))
            top = torch.cat([top_columns(self._scores(customers[s:s + step], article_emb, articles), n)
                             for s in range(0, len(customers), step)])
        top = top.cpu().numpy().ravel()
        return np.repeat(np.arange(len(customers)), n), (top if articles is None else articles[top])

    def keep_top(self, customers: np.ndarray, n: int, articles: np.ndarray | None = None) -> None:
        """Compute these customers' top-n among `articles` now, as `top` does, and keep it (4 bytes x n per customer
        of the embeddings): a later `top` with the same n and the same list (the same array object) for kept
        customers reads it back instead of scoring every listed article again."""
        customers = np.unique(np.asarray(customers, np.int64))
        n = min(n, len(self._article_emb(articles)))
        table = np.full((len(self.customer_emb), max(n, 0)), -1, np.int32)
        parts = [customers[s:s + KEEP_CHUNK] for s in range(0, len(customers), KEEP_CHUNK)]
        for rows, (_, top) in zip(parts, in_parallel(lambda rows: self.top(rows, n, articles), parts)):
            table[rows] = top.reshape(len(rows), n)
        self._kept = (n, articles, table)

    @torch.no_grad()
    def moments(self, customers: np.ndarray, scores: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """Each customer's mean and spread (sample standard deviation, kept off zero) of their scores over all
        articles; `scores`, the customers' dense rows where already computed (the MLP decoder needs them)."""
        if self._cov is None:
            scores = self.dense(customers) if scores is None else scores
            return scores.mean(1), scores.std(1) + 1e-6

        def moments(rows: np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
            c = self.customer_emb[self._index(rows)].double()
            mean, var = c @ self._mean, ((c @ self._cov) * c).sum(1).clamp_min(0)
            if self.own is not None:  # the own-edge terms g shift a few scores s: sums of g and of 2gs + g^2
                n = len(self.article_emb)
                r, a, g = self.own.rows(self.model, rows, self.device)
                r_t, g = self._index(r), g.double()
                s = (c[r_t] * self.article_emb[self._index(a)].double()).sum(1)
                shift = torch.zeros_like(mean).index_add_(0, r_t, g) / n
                second = torch.zeros_like(mean).index_add_(0, r_t, 2 * g * s + g * g) / n
                # sample variance -> second moment, shifted, -> sample variance
                squares = var * (n - 1) / n + mean * mean + second
                mean = mean + shift
                var = ((squares - mean * mean) * n / max(n - 1, 1)).clamp_min(0)
            return mean.float(), var.sqrt().float() + 1e-6

        return self._in_blocks(moments, np.asarray(customers))

    def head_unit(self, own: OwnEdges) -> float:
        """The unit of the GNN alone's retrieval head (`hmgnn train`'s retrieval choice): the mean, over the
        customers with a pair in `own`, of each one's score spread over every article (1 for none), so that a GNN
        trained again (the refit), whose scores have another scale, weighs its own edges alike."""
        customers = np.flatnonzero(np.diff(own.times.indptr) > 0)
        return float(self.moments(customers)[1].mean()) if len(customers) else 1.0

    def _unit_embeddings(self) -> torch.Tensor:
        if self._unit is None:
            self._unit = torch.nn.functional.normalize(self.article_emb.float(), dim=1)
        return self._unit

    @torch.no_grad()
    def closest_recent(self, snapshot: Snapshot, customer: int, articles: np.ndarray) -> np.ndarray:
        """For each of `articles`, the one of the customer's RECENT_ARTICLES most recently bought articles (those
        `recent_similarity` compares with) whose embedding has the highest cosine to its own; ties to the smaller
        article. -1 for a customer without purchases."""
        _, recent = recent_bought(snapshot, np.array([customer], np.int64))
        if not len(recent) or not len(articles):
            return np.full(len(articles), -1, np.int64)
        unit = self._unit_embeddings()
        # summed as `recent_similarity` sums: the closest is the article behind its `gnn_recent_max`
        sims = (unit[self._index(articles), None, :] * unit[self._index(recent)][None]).sum(2)  # [articles, recent]
        return recent[sims.argmax(1).cpu().numpy()]

    @torch.no_grad()
    def recent_similarity(self, snapshot: Snapshot, customers: np.ndarray, rows: np.ndarray,
                          articles: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(max, mean) cosine similarity of each pair's article embedding to the embeddings of the customer's
        RECENT_ARTICLES most recently bought articles (customers[rows], articles): how close the candidate lies in the
        graph model to what the customer just bought, which a dot product with the customer's one vector blurs.
        NaN for a customer without purchases."""
        self._unit_embeddings()
        r, a = recent_bought(snapshot, np.asarray(customers, np.int64))
        slot = position_in_run(r)
        recent = torch.zeros(len(customers), RECENT_ARTICLES, self._unit.shape[1], device=self.device)
        present = torch.zeros(len(customers), RECENT_ARTICLES, dtype=torch.bool, device=self.device)
        if len(r):
            at = (torch.from_numpy(r).to(self.device), torch.from_numpy(slot).to(self.device))
            recent[at] = self._unit[self._index(a)]
            present[at] = True
        pair_rows, pair_articles = self._index(rows), self._index(articles)
        # an elementwise product summed over the embedding: each pair's value is the same whatever the batch
        sims = torch.cat([(self._unit[pair_articles[s:s + PAIR_CHUNK], None, :] * recent[pair_rows[s:s + PAIR_CHUNK]]).sum(2)
                          for s in range(0, len(pair_rows), PAIR_CHUNK)]) if len(pair_rows) else \
            torch.zeros(0, RECENT_ARTICLES, device=self.device)
        mask = present[pair_rows]
        count = mask.sum(1)
        best = torch.where(mask, sims, torch.full_like(sims, -torch.inf)).amax(1)
        mean = (sims * mask).sum(1) / count.clamp_min(1)
        none = count == 0
        best[none], mean[none] = torch.nan, torch.nan
        return best.cpu().numpy(), mean.cpu().numpy()

    @torch.no_grad()
    def pairs(self, customers: np.ndarray, rows: np.ndarray, articles: np.ndarray,
              scores: torch.Tensor | None = None) -> tuple[np.ndarray, np.ndarray]:
        """(score, per-customer z-score over all articles) of the pairs (customers[rows], articles); `scores`, the
        customers' dense rows where already computed."""
        r, a = self._index(rows), self._index(articles)
        if scores is not None:
            s = scores[r, a]
        else:
            s = self.model.score(self.customer_emb, self.article_emb, self._index(customers)[r], a).float()
            if self.own is not None:
                s = s + self.own.pairs(self.model, np.asarray(customers, np.int64)[rows], articles, self.device)
        mean, std = self.moments(customers, scores)
        return s.cpu().numpy(), ((s - mean[r]) / std[r]).cpu().numpy()


def recent_bought(snapshot: Snapshot, customers: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(row, article) of each customer's RECENT_ARTICLES most recently bought articles (ties: the smaller article),
    by row, then article."""
    r, a, last = csr_rows(snapshot.last_bought, customers)
    keep = top_per_row(r, a, -last, RECENT_ARTICLES)
    return r[keep], a[keep]


class RandomWalk(RP3Beta):
    """The RP3beta walk (`RP3Beta`) over a snapshot's purchases: a graph signal without learned weights, the ranker's
    `walk` candidate source and a pair feature.

    Args:
        snapshot: the purchases the walks run over.
        beta: popularity penalty.
    """

    def __init__(self, snapshot: Snapshot, beta: float = WALK_BETA) -> None:
        super().__init__(snapshot.times_bought, beta)

    @classmethod
    def if_used(cls, snapshot: Snapshot, sizes: dict[str, int]) -> RandomWalk | None:
        """The walk over `snapshot` where the candidate `sizes` ask for walk candidates, else None (the walk
        source is off, and its pair features stay empty)."""
        return cls(snapshot) if sizes.get("walk", 0) > 0 else None


def trend_percentile(snapshot: Snapshot) -> np.ndarray:
    """float32 [n_articles]: each article's percentile of recent sales (28-day decayed, the trending order; ties
    share one)."""
    return (rankdata(snapshot.trend) / snapshot.n_articles).astype(np.float32)


def non_candidate_score(trend_pct: torch.Tensor, z: torch.Tensor, mix: float) -> torch.Tensor:
    """In [0, 1): how an article that is no candidate of the customer compares: `mix` x its recent-sales percentile
    + (1 - mix) x the normal-approximation percentile of the GNN's score in the customer's row (its z-score, so no
    row is sorted). `hmgnn train` chooses `mix` on the validation window (`choose_rest_mix`)."""
    return mix * trend_pct + (1 - mix) * torch.special.ndtr(z)


@dataclass
class CandidatePairs:
    """(customer, article) candidates with the bit set of the sources (SOURCES order) that proposed each, the GNN's
    and the walk's score of each pair and the GNN's similarity to the customer's recent purchases (NaN without
    them). Indices are int64, so customer * n_articles + article keys never overflow."""

    customer: np.ndarray
    article: np.ndarray
    sources: np.ndarray
    gnn_score: np.ndarray
    gnn_zscore: np.ndarray
    walk_score: np.ndarray
    gnn_recent_max: np.ndarray
    gnn_recent_mean: np.ndarray

    def subset(self, keep: np.ndarray) -> CandidatePairs:
        """The pairs where the boolean mask `keep` is set."""
        return CandidatePairs(*(getattr(self, f.name)[keep] for f in fields(self)))


def _bought(snapshot: Snapshot, customers: np.ndarray, n: int) -> tuple[np.ndarray, np.ndarray]:
    r, a, times = csr_rows(snapshot.times_bought, customers)
    _, _, last = csr_rows(snapshot.last_bought, customers)  # same sparsity pattern: both from the same pairs
    keep = top_per_row(r, a, times * np.exp2(-(last - 1) / 30.0), n)  # frequent and recent first
    return r[keep], a[keep]


def _cached(snapshot: Snapshot, key: str, build: Callable[[], object]) -> object:
    if key not in snapshot.cache:
        snapshot.cache[key] = build()
    return snapshot.cache[key]


def _product_members(product: np.ndarray) -> sp.csr_matrix:
    return sp.csr_matrix((np.ones(len(product), np.float32), (product, np.arange(len(product)))),
                         shape=(int(product.max(initial=-1)) + 1, len(product)))


def _variants(snapshot: Snapshot, customers: np.ndarray, n: int) -> tuple[np.ndarray, np.ndarray]:
    """The articles of the products each customer bought, by how often they bought the product."""
    members = _cached(snapshot, "members", lambda: _product_members(snapshot.meta.product))
    r, product, times = csr_rows(snapshot.product_bought, customers)
    at, a, _ = csr_rows(members, product)  # each article of each (customer, product); `at` indexes the latter
    r, times = r[at], times[at]
    fresh = stored_at(snapshot.times_bought, customers[r], a) < 0  # the bought colours are `bought`'s
    keep = top_per_row(r[fresh], a[fresh], times[fresh], n)
    return r[fresh][keep], a[fresh][keep]


def _shared(order: np.ndarray, rows: np.ndarray, n: int) -> tuple[np.ndarray, np.ndarray]:
    n = min(n, len(order))
    return np.repeat(rows, n), np.tile(order[:n], len(rows))


def _band_orders(snapshot: Snapshot) -> tuple[np.ndarray | None, list[np.ndarray]]:
    """Each customer's age band and each band's articles sold last week, best first."""
    inter = snapshot.inter
    if inter.customer_age is None:
        return None, []
    bands = age_band(inter.customer_age)
    orders = []
    for counts in band_sales(inter, snapshot.as_of, bands):
        sold = np.flatnonzero(counts)
        orders.append(sold[np.lexsort((sold, -counts[sold]))])
    return bands, orders


def _popular(snapshot: Snapshot, customers: np.ndarray, n: int) -> tuple[np.ndarray, np.ndarray]:
    """Last week's bestsellers, and half as many of the customer's age band where the age is known."""
    rows = np.arange(len(customers))
    order = _cached(snapshot, "popular", lambda: np.argsort(snapshot.popularity_rank, kind="stable"))
    parts = [_shared(order, rows, n)]
    bands, orders = _cached(snapshot, "bands", lambda: _band_orders(snapshot))
    for b, band_order in enumerate(orders):
        mine = rows[bands[customers] == b]
        if len(mine):
            parts.append(_shared(band_order, mine, n // 2))
    return np.concatenate([p[0] for p in parts]), np.concatenate([p[1] for p in parts])


def _trending_order(snapshot: Snapshot) -> np.ndarray:
    sold = np.flatnonzero(snapshot.trend > 0)
    return sold[np.lexsort((sold, -snapshot.trend[sold]))]


def _trending(snapshot: Snapshot, customers: np.ndarray, n: int) -> tuple[np.ndarray, np.ndarray]:
    order = _cached(snapshot, "trending", lambda: _trending_order(snapshot))
    return _shared(order, np.arange(len(customers)), n)


def recent_articles(snapshot: Snapshot, days: int) -> np.ndarray:
    """The articles sold in the `days` days up to the snapshot's day, in index order."""
    return _cached(snapshot, f"recent{days}", lambda: np.flatnonzero(snapshot.last_sold < days))


def gnn_pool(snapshot: Snapshot, gnn_recent_days: int) -> np.ndarray | None:
    """The articles the GNN's own candidates come from: those sold in the last `gnn_recent_days` days, or None (every
    article) for 0. The same array object on every call for a snapshot, which `GNNScores.keep_top` relies on."""
    return recent_articles(snapshot, gnn_recent_days) if gnn_recent_days > 0 else None


def candidate_pairs(snapshot: Snapshot, customers: np.ndarray, sizes: dict[str, int], gnn: GNNScores | None = None,
                    walk: RandomWalk | None = None, chunk: int = 512, gnn_recent_days: int = 0) -> CandidatePairs:
    """Every customer's candidates from each source with a size > 0 in `sizes` (a name of SOURCES -> how many),
    each tagged with the bits of the sources that propose it. The GNN's own top-N is taken among the articles sold
    in the last `gnn_recent_days` days (0: every article), which skips the scores of articles no longer on sale.
    Customers are handled in chunks; the output is sorted by customer (in the order given) then article."""
    pool = gnn_pool(snapshot, gnn_recent_days)
    out: list[tuple[np.ndarray, ...]] = []
    for s in range(0, len(customers), chunk):
        cust = customers[s:s + chunk]
        found: list[tuple[np.ndarray, np.ndarray, int]] = []
        walked = walk.dense(cust) if walk is not None else None
        # the MLP decoder's mean and spread need every article's score anyway: its rows are computed once, for both
        rows = gnn.dense(cust) if gnn is not None and gnn.model.mlp is not None and pool is None else None
        for bit, name in enumerate(SOURCES):
            n = sizes.get(name, 0)
            if n <= 0:
                continue
            if name == "gnn":
                if gnn is None:
                    continue
                r, a = gnn.top(cust, n, pool, rows)
            elif name == "walk":
                if walked is None:
                    continue
                v, top = torch.topk(walked, min(n, walked.shape[1]), dim=1)
                keep = (v > 0).numpy()  # only articles a walk reaches
                r, a = np.nonzero(keep)[0], top.numpy()[keep]
            else:
                r, a = {"bought": _bought, "variant": _variants, "popular": _popular,
                        "trending": _trending}[name](snapshot, cust, n)
            found.append((r, a, bit))
        r = np.concatenate([f[0] for f in found]).astype(np.int64)
        a = np.concatenate([f[1] for f in found]).astype(np.int64)
        bits = np.concatenate([np.full(len(f[0]), 1 << f[2], np.int64) for f in found])
        key = r * snapshot.n_articles + a
        uniq, inv = np.unique(key, return_inverse=True)
        merged = np.zeros(len(uniq), np.int64)
        np.bitwise_or.at(merged, inv, bits)
        r, a = uniq // snapshot.n_articles, uniq % snapshot.n_articles
        nan = np.full(len(r), np.nan, np.float32)
        g_score, g_z, w_score, g_max, g_mean = nan, nan.copy(), nan.copy(), nan.copy(), nan.copy()
        if gnn is not None:
            g_score, g_z = gnn.pairs(cust, r, a, rows)
            g_max, g_mean = gnn.recent_similarity(snapshot, cust, r, a)
        if walked is not None:
            w_score = walked[torch.from_numpy(r), torch.from_numpy(a)].numpy().astype(np.float32)
        out.append((cust[r].astype(np.int64), a, merged.astype(np.uint8), g_score, g_z, w_score, g_max, g_mean))
    if not out:
        empty = np.zeros(0, np.float32)
        return CandidatePairs(np.zeros(0, np.int64), np.zeros(0, np.int64), np.zeros(0, np.uint8),
                              *(empty for _ in range(5)))
    return CandidatePairs(*(np.concatenate([o[i] for o in out]) for i in range(8)))


def source_names(bits: int) -> tuple[str, ...]:
    """The names of the sources in a candidate's bit set, strongest evidence first (`reasons.STRENGTH`)."""
    return strongest({name for b, name in enumerate(SOURCES) if bits >> b & 1})


def candidate_reasons(snapshot: Snapshot, customer: int, articles: np.ndarray, bits: np.ndarray,
                      sizes: dict[str, int], gnn: GNNScores | None, walk: RandomWalk | None,
                      beyond: str) -> list[Reason]:
    """Why each of `articles` ranks for `customer` in the two-stage model: `bits`, the set of sources that proposed
    each (0: no candidate, ranked after them by `beyond`), and the evidence of the strongest: the customer's
    purchases of a candidate (which the ranker reads whichever source proposed it), the bought article of the same
    product, the bought article whose walk reaches it furthest, the recently bought article closest to it in the
    GNN's embeddings, or the bestseller list (the customer's age band's, or everyone's) that holds it."""
    c = np.array([customer], np.int64)
    _, bought, times = csr_rows(snapshot.times_bought, c)
    _, _, last = csr_rows(snapshot.last_bought, c)  # the same pattern: days before as_of, + 1
    names = [source_names(int(b)) for b in bits.tolist()]
    kinds = [n[0] if n else BEYOND for n in names]
    at = np.searchsorted(bought, articles)
    own = (at < len(bought)) & (bought[np.minimum(at, max(len(bought) - 1, 0))] == articles) if len(bought) else \
        np.zeros(len(articles), bool)
    # a candidate the customer bought: the ranker reads their purchases of it whichever source proposed it
    kinds = [BOUGHT if o and n else k for o, n, k in zip(own.tolist(), names, kinds)]
    refer = np.full(len(articles), -1, np.int64)  # the customer's bought article each reason names

    def pick(kind: str) -> np.ndarray:
        return np.array([k == kind for k in kinds], bool)

    variant = pick(VARIANT)
    for i in np.flatnonzero(variant):
        same = np.flatnonzero(snapshot.meta.product[bought] == snapshot.meta.product[articles[i]])
        refer[i] = bought[same[np.lexsort((bought[same], last[same], -times[same]))[0]]]  # most bought, then latest
    walked = pick(WALK)
    if walked.any() and walk is not None:
        # the walk's score sums over the customer's articles i of (their step to i) x (i's reach of the article):
        # the largest reach names the article that contributes most
        reach = (walk.article_step[bought] @ walk.last_step)[:, articles[walked]].toarray()
        refer[walked] = bought[reach.argmax(0)]
    near = pick(GNN)
    if near.any() and gnn is not None:
        refer[near] = gnn.closest_recent(snapshot, customer, articles[near])
    band = None
    if pick(POPULAR).any():
        bands, orders = _cached(snapshot, "bands", lambda: _band_orders(snapshot))
        b = int(bands[customer]) if bands is not None else len(orders)
        if b < len(orders):
            band = (AGE_BANDS[b][2], orders[b][:sizes[POPULAR] // 2])  # as `_popular` takes the band's list
    out = []
    for i, (a, kind, sources) in enumerate(zip(articles.tolist(), kinds, names)):
        if kind == BOUGHT:
            j = int(np.searchsorted(bought, a))
            day = snapshot.as_of - dt.timedelta(days=int(last[j]) - 1)
            out.append(Reason(BOUGHT, sources, times=int(times[j]), last=day))
        elif kind in (VARIANT, WALK, GNN):
            out.append(Reason(kind, sources, article=int(refer[i])))
        elif kind == POPULAR:
            mine = band is not None and bool(np.isin(a, band[1]))
            out.append(Reason(POPULAR, sources, band=band[0] if mine else None))
        elif kind == TRENDING:
            out.append(Reason(TRENDING, sources, detail=str(TREND_DAYS)))
        else:
            out.append(Reason(BEYOND, detail=beyond))
    return out

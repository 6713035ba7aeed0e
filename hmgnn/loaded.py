"""The loaded recommender, as every request of `hmgnn serve` and every call of `hmgnn.load()` reads it: a fitted
model in memory with its id maps and article fields, built once and never changed. No web framework: the Python API
works without the serve extra."""

from __future__ import annotations

import datetime as dt
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl
import torch

from hmgnn import __version__
from hmgnn import artifacts as A
from hmgnn.config import Config
from hmgnn.console import info
from hmgnn.errors import HmgnnError
from hmgnn.models.base import Recommender, top_k  # top_k: exact on ties, like every ranking in hmgnn
from hmgnn.models.reasons import Reason
from hmgnn.recommend import DISPLAY_COLUMNS, explained, fit_model, model_name, rank_customer
from hmgnn.registry import model_class


def rank_dense(model: Recommender, customers: np.ndarray, ks: list[int],
               filter_bought: list[bool]) -> list[tuple[np.ndarray, np.ndarray]]:
    """`rank_customer` for several customers with a purchase history at once, for a model that scores every
    article per customer (no `shared_scores`, e.g. the GNN): (article indices, scores) each, equal bit for bit to
    the one-customer answer of `hmgnn recommend`.

    `Recommender._rank_dense` split by what it costs. Each customer's scores come from their own
    `score_all` call, as `hmgnn recommend` computes them: the GNN's batched [B x d] @ [d x n_articles] product runs
    other BLAS kernels whose sums differ in the last bit, which moves scores rounded to 6 decimals and near-ties,
    so an answer would depend on who else was in the batch (and for a few customers the batched product saves
    little: it streams the same article embeddings). The already-bought filter and the exact
    top-k (`Recommender.rank_scores`) are row-wise, so they run once for the batch, for the largest k asked (the
    first k of an exact top-k' are the exact top-k).
    """
    scores = torch.cat([torch.as_tensor(model.score_all(customers[r:r + 1])) for r in range(len(customers))])
    ids, vals = model.rank_scores(scores, customers, min(max(ks), model.n_articles),
                                  np.array(filter_bought) | model.filters_bought)
    out = []
    for r, k in enumerate(ks):
        keep = ids[r, :k] >= 0  # a slot that nothing could fill (every article filtered)
        out.append((ids[r, :k][keep], vals[r, :k][keep]))
    return out


@dataclass(frozen=True, eq=False)
class LoadedModel:
    """A fitted model with everything a request needs, precomputed once; never changed after it is built.

    Args:
        name: the model's registry name.
        model: the fitted recommender (fit on every purchase in tables/).
        sorted_ids: customer ids (bytes, sorted) and `sorted_index` their customer_index, for O(log n) lookups.
        article_index: article_id -> article_index.
        article_rows: per article_index, the fields shown for an article; `article_json` the same, as the members
            of a JSON object (so a response is joined from strings, not serialised per request).
        unit_embeddings: L2-normalised article embeddings [n_articles, d] (CPU), None for a model without any.
        dense: the model ranks by scoring every article per customer (no `shared_scores`, no candidate stage of
            its own): see `rank_dense`.
    """

    name: str
    model: Recommender
    model_fingerprint: str | None
    data_fingerprint: str
    loaded_at: dt.datetime
    sorted_ids: np.ndarray
    sorted_index: np.ndarray
    article_index: dict[int, int]
    article_rows: list[dict[str, Any]]
    article_json: list[str]
    unit_embeddings: torch.Tensor | None
    dense: bool

    def customer_index(self, customer_id: str) -> int | None:
        """The customer's row in the id maps, None when nobody has this (well-formed, lower-case) id."""
        key = customer_id.encode()
        pos = int(np.searchsorted(self.sorted_ids, key))
        if pos < len(self.sorted_ids) and self.sorted_ids[pos] == key:
            return int(self.sorted_index[pos])
        return None

    def recommend_json(self, asks: list[tuple[str, int, bool]]) -> list[bytes]:
        """The `Recommendations` JSON for each (customer id, k, filter_bought), each the same answer as
        `hmgnn recommend`: a dense model (the GNN alone) ranks its customers with history together (`rank_dense`),
        a model with its own candidates (the two-stage gnn, whose every stage is row by row for a small batch) in
        one `recommend` call per (k, filter); everyone else goes through `rank_customer` (cold customers and the
        baselines are cheap: their scores are one precomputed ranking per segment plus a few sparse boosts)."""
        model = self.model
        index = [self.customer_index(cid) for cid, _, _ in asks]
        known = [n for n, i in enumerate(index) if i is not None]
        warm = []
        if (self.dense or model.ranks_candidates) and known:
            cold = model.is_cold(np.array([index[n] for n in known], np.int64))
            warm = [n for n, c in zip(known, cold) if not c]
        ranked: dict[int, tuple[np.ndarray, np.ndarray, str | None, list[Reason]]] = {}
        if warm and self.dense:
            rows = rank_dense(model, np.array([index[n] for n in warm], np.int64),
                              [asks[n][1] for n in warm], [asks[n][2] for n in warm])
            ranked = {n: (ids, scores, None, model.explain(index[n], ids[None])[0])
                      for n, (ids, scores) in zip(warm, rows)}
        elif warm:  # a model with its own candidates ranks each customer alone: one call for the requests alike
            alike: dict[tuple[int, bool], list[int]] = {}
            for n in warm:
                alike.setdefault((asks[n][1], asks[n][2]), []).append(n)
            for (k, filter_bought), group in alike.items():
                ids, scores, reasons = model.recommend_explained(np.array([index[n] for n in group], np.int64), k=k,
                                                                 filter_already_bought=filter_bought)
                for n, i, v, r in zip(group, ids, scores, reasons):
                    ranked[n] = (i[i >= 0], v[i >= 0], None, r)
        out = []
        for n, (cid, k, filter_bought) in enumerate(asks):
            ids, scores, fallback, reasons = ranked[n] if n in ranked else rank_customer(model, index[n], k,
                                                                                        filter_bought)
            out.append(self._recommendations_json(cid, k, ids, scores, fallback, reasons))
        return out

    def recommend_many(self, customer_ids: list[str], k: int, filter_bought: bool) -> list[dict[str, Any]]:
        """Like `recommend_json` for each id (as dicts), with the known customers ranked in one vectorised call
        (a batched product: scores may differ from the one-customer answer in the last bit)."""
        index = [self.customer_index(c) for c in customer_ids]
        known = [i for i in index if i is not None]
        ranked: dict[int, tuple[np.ndarray, np.ndarray, list[Reason]]] = {}
        if known:
            ids, scores, reasons = self.model.recommend_explained(np.array(known, np.int64), k=k,
                                                                  filter_already_bought=filter_bought)
            ranked = {i: (ids[r], scores[r], reasons[r]) for r, i in enumerate(known)}
        out = []
        for cid, i in zip(customer_ids, index):
            if i is None:
                ids, scores, fallback, reasons = rank_customer(self.model, None, k)
            else:
                (ids, scores, reasons), fallback = ranked[i], self.model.fallback_reason(i)
                keep = ids >= 0
                ids, scores = ids[keep], scores[keep]
            out.append(self._recommendations(cid, k, ids, scores, fallback, reasons))
        return out

    def similar(self, article_index: int, k: int) -> list[dict[str, Any]]:
        """The k articles with the highest cosine to this one (itself left out), ties to the smaller index."""
        assert self.unit_embeddings is not None
        sims = self.unit_embeddings @ self.unit_embeddings[article_index]
        sims[article_index] = -torch.inf
        scores, top = top_k(sims[None], min(k, len(sims) - 1))
        return [{"rank": r + 1, **self.article_rows[a], "score": round(s, 6)}
                for r, (a, s) in enumerate(zip(top[0].tolist(), scores[0].tolist()))]

    def health(self) -> dict[str, Any]:
        return {"status": "ok", "model": self.name, "model_fingerprint": self.model_fingerprint,
                "data_fingerprint": self.data_fingerprint, "hmgnn_version": __version__, "as_of": self.model.as_of,
                "loaded_at": self.loaded_at, "customers": self.model.n_customers, "articles": self.model.n_articles}

    def _article_id(self, article_index: int) -> str:
        return self.article_rows[article_index]["article_id"]

    def _recommendations(self, customer_id: str, k: int, ids: np.ndarray, scores: np.ndarray,
                         fallback: str | None, reasons: list[Reason]) -> dict[str, Any]:
        recs = [{"rank": r + 1, **self.article_rows[a], "score": round(s, 6), **explained(why, self._article_id)}
                for r, (a, s, why) in enumerate(zip(ids.tolist(), scores.tolist(), reasons))]
        return {"customer_id": customer_id, "model": self.name, "k": k, "cold_start": fallback is not None,
                "fallback": fallback, "recommendations": recs}

    def _recommendations_json(self, customer_id: str, k: int, ids: np.ndarray, scores: np.ndarray,
                              fallback: str | None, reasons: list[Reason]) -> bytes:
        # what FastAPI would write for `_recommendations` under the `Recommendations` model (same members, same
        # order, compact), at a fraction of the cost; `customer_id` is checked hex, so it needs no escaping
        recs = ",".join(f'{{{self.article_json[a]},"rank":{r + 1},"score":{round(s, 6)!r},'
                        f'"why":{json.dumps(why.why(self._article_id), ensure_ascii=False)},'
                        f'"sources":{json.dumps(list(why.sources), separators=(",", ":"))}}}'
                        for r, (a, s, why) in enumerate(zip(ids.tolist(), scores.tolist(), reasons)))
        return (f'{{"customer_id":"{customer_id}","model":{json.dumps(self.name)},"k":{k},'
                f'"cold_start":{"false" if fallback is None else "true"},'
                f'"fallback":{json.dumps(fallback, ensure_ascii=False)},"recommendations":[{recs}]}}').encode()


def load(cfg: Config) -> LoadedModel:
    """cfg.serve.model fit on every purchase in tables/ (as `hmgnn recommend` does) plus the id maps and the
    per-article fields, all in memory; the GNN's article embeddings normalised for cosine lookups."""
    A.forget_fingerprints()  # a reload reads every file again: one edited in place since the last load is seen
    name = model_name(cfg, cfg.serve.model)  # `auto` resolved; a bad name fails before the data is read
    cls = model_class(name)
    workdir = Path(cfg.workdir)
    where = A.locate(workdir)
    tables = where.tables
    folder = getattr(cls, "folder", None)  # models with a checkpoint (the GNNs) say where it lives
    # (`Location.folder`: a self-contained model folder holds it at its top)
    checkpoint = where.folder(folder) / A.MODEL_PT if folder is not None else None
    before = A.fingerprint(checkpoint) if checkpoint is not None and checkpoint.is_file() else None
    model, _ = fit_model(cfg, name)
    if cfg.serve.keep_candidates and model.ranks_candidates:
        info("serve.keep_candidates: computing every customer's GNN candidates")
        model.keep_candidates()
    fingerprint = A.fingerprint(checkpoint) if checkpoint is not None else None
    if fingerprint != before:  # the file was replaced while we read it: the fingerprint would lie
        raise HmgnnError(f"{checkpoint} changed while it was loaded; reload again")

    customers = pl.read_parquet(tables / A.CUSTOMERS_PARQUET, columns=["customer_index", "customer_id"])
    order = customers["customer_id"].arg_sort().to_numpy()
    sorted_ids = customers["customer_id"].to_numpy()[order].astype("S64")
    articles = (pl.read_parquet(tables / A.ARTICLES_PARQUET, columns=["article_index", "article_id", *DISPLAY_COLUMNS])
                .sort("article_index"))
    article_ids = articles["article_id"].to_list()
    rows = articles.select(A.article_labels(pl.col("article_id")), *DISPLAY_COLUMNS).to_dicts()
    members = [json.dumps(row, ensure_ascii=False, separators=(",", ":"))[1:-1] for row in rows]

    unit = None
    if callable(getattr(model, "embeddings", None)):
        unit = torch.nn.functional.normalize(model.embeddings()[1].float(), dim=1)
    return LoadedModel(name, model, fingerprint, A.fingerprint(tables / A.TRANSACTIONS_PARQUET),
                       dt.datetime.now(dt.timezone.utc), sorted_ids,
                       customers["customer_index"].to_numpy()[order].astype(np.int64),
                       {a: i for i, a in enumerate(article_ids)}, rows, members, unit,
                       model.shared_scores() is None and not model.ranks_candidates)

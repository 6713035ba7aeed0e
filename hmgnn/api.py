"""The Python API: a trained workdir as one object, with string ids in and polars frames out.

    import hmgnn

    rec = hmgnn.load("work/demo")                  # a workdir after `hmgnn train`, or a model/ folder anywhere
    rec.recommend(["<64-hex customer id>"], k=12)  # customer_id, rank, article_id, score, fallback, why, sources
    rec.similar(["0108775015"], k=12)              # article_id, rank, similar_article_id, score
    rec.score(["<customer id>"], ["0108775015"])   # the model's score of each pair
    customers, articles = rec.embeddings()         # frames keyed by id, for a vector database

It answers exactly as `hmgnn recommend` and `hmgnn serve` do for the same workdir and model (it loads what the
server loads: the model fit on every purchase in tables/, and the id maps). A model folder (model/, copied
anywhere) holds its own copies of these and answers as its workdir does, without it.
"""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

import numpy as np
import polars as pl

from hmgnn import artifacts as A
from hmgnn.errors import InputError, UsageError

__all__ = ["load", "Model"]


def load(path: str | Path, model: str = "auto", config: str | Path | None = None,
         overrides: Sequence[str] = ()) -> Model:
    """The recommender of a workdir: `model` is `auto` (the trained gnn, else trending), `gnn` or any model name.

    Args:
        path: the workdir (holding tables/ and, once trained, model/), or a model folder: the model/ that
            `hmgnn train` writes, self-contained, which loads on its own wherever it was copied.
        model: which model answers (default `auto`, as `hmgnn recommend`).
        config: the config file the workdir was made with, where it set more than the defaults.
        overrides: config overrides, as `--set` takes them (`"recommend.batch_size=256"`).
    """
    from hmgnn import loaded
    from hmgnn.config import load_config

    path = Path(path)
    if not path.is_dir():
        raise InputError(f"{path}: no such folder; pass the workdir of `hmgnn train` (e.g. work/demo)")
    cfg = load_config(config, [*overrides, f"serve.model={model!r}"], workdir=path)  # a model folder is read alone
    return Model(loaded.load(cfg))


class Model:
    """A loaded recommender (see `load`). Unknown customer ids get the labelled fallback, like the CLI."""

    def __init__(self, served) -> None:
        self._served = served
        self._labels = [row["article_id"] for row in served.article_rows]  # zero-padded, per article_index
        order = np.argsort(served.sorted_index)
        self._customer_ids = served.sorted_ids[order].astype(str)  # per customer_index

    @property
    def name(self) -> str:
        """The model's registry name (`gnn`, `trending`, ...)."""
        return self._served.name

    def __repr__(self) -> str:
        m = self._served.model
        return f"hmgnn.Model({self.name!r}, customers={m.n_customers:,}, articles={m.n_articles:,}, as_of={m.as_of})"

    def customer_ids(self, with_history: bool = True) -> list[str]:
        """Every customer id the model knows, in the tables' order (by default only those with a purchase)."""
        ids = self._customer_ids
        if with_history:
            ids = ids[~self._served.model.is_cold(np.arange(len(ids)))]
        return ids.tolist()

    def recommend(self, customer_ids: Sequence[str], k: int = 12, filter_already_bought: bool = False) -> pl.DataFrame:
        """Top-k per customer: one row per (customer_id, rank), with `fallback` saying why where it is not personal,
        `why` what ranked the article (a sentence) and `sources` the candidate sources that proposed it."""
        from hmgnn.recommend import check_k

        k = check_k(k, self._served.model.n_articles)
        asked = _customer_ids(customer_ids)
        rows = self._served.recommend_many(asked, k, filter_already_bought)
        return pl.DataFrame(
            [{"customer_id": r["customer_id"], "rank": rec["rank"], "article_id": rec["article_id"],
              "score": rec["score"], "fallback": r["fallback"], "why": rec["why"], "sources": rec["sources"]}
             for r in rows for rec in r["recommendations"]],
            schema={"customer_id": pl.String, "rank": pl.Int32, "article_id": pl.String, "score": pl.Float64,
                    "fallback": pl.String, "why": pl.String, "sources": pl.List(pl.String)})

    def similar(self, article_ids: Sequence[str | int], k: int = 12) -> pl.DataFrame:
        """The k articles nearest each one by cosine of the GNN's article embeddings (the gnn only)."""
        from hmgnn.recommend import check_k

        k = check_k(k, self._served.model.n_articles)
        if self._served.unit_embeddings is None:
            raise ValueError(f"model {self.name!r} has no article embeddings; load the workdir with model='gnn'")
        rows = []
        for article in _as_list(article_ids, "article_ids"):
            index = self._article_index(article)
            for rec in self._served.similar(index, k):
                rows.append({"article_id": self._labels[index], "rank": rec["rank"],
                             "similar_article_id": rec["article_id"], "score": rec["score"]})
        return pl.DataFrame(rows, schema={"article_id": pl.String, "rank": pl.Int32, "similar_article_id": pl.String,
                                          "score": pl.Float64})

    def score(self, customer_ids: Sequence[str], article_ids: Sequence[str | int]) -> np.ndarray:
        """The model's score of each (customer_ids[i], article_ids[i]) pair; the customers must be known."""
        customers, articles = _customer_ids(customer_ids), _as_list(article_ids, "article_ids")
        if len(customers) != len(articles):
            raise ValueError(f"{len(customers)} customer ids but {len(articles)} article ids; pass one of each per pair")
        index = []
        for c in customers:
            i = self._served.customer_index(c)
            if i is None:
                raise InputError(f"customer {c} is not in tables/customers.parquet")
            index.append(i)
        return np.asarray(self._served.model.score(np.array(index, np.int64),
                                                   np.array([self._article_index(a) for a in articles], np.int64)))

    def embeddings(self) -> tuple[pl.DataFrame, pl.DataFrame]:
        """(customers, articles): `customer_id` / `article_id` and `embedding` (a list of floats), the gnn only."""
        if not callable(getattr(self._served.model, "embeddings", None)):
            raise ValueError(f"model {self.name!r} has no embeddings; load the workdir with model='gnn'")
        customer_emb, article_emb = (e.float().cpu().numpy() for e in self._served.model.embeddings())
        return (pl.DataFrame({"customer_id": self._customer_ids, "embedding": customer_emb}),
                pl.DataFrame({"article_id": self._labels, "embedding": article_emb}))

    def export_embeddings(self, out: str | Path) -> Path:
        """Write both embedding tables to one parquet file: `kind` (customer | article), `id`, `embedding`
        (float32 list); written aside, then renamed, so `out` is never half-written."""
        customers, articles = self.embeddings()
        frame = pl.concat([
            customers.select(pl.lit("customer").alias("kind"), pl.col("customer_id").alias("id"), "embedding"),
            articles.select(pl.lit("article").alias("kind"), pl.col("article_id").alias("id"), "embedding"),
        ]).with_columns(pl.col("embedding").cast(pl.List(pl.Float32)))
        out = Path(out)
        if out.suffix != ".parquet":
            raise InputError(f"--embeddings {out}: write a .parquet file")
        out.parent.mkdir(parents=True, exist_ok=True)
        A.atomic_write(out, frame.write_parquet)
        return out

    def _article_index(self, article: str | int) -> int:
        if isinstance(article, bool) or not isinstance(article, (str, int, np.integer)):
            raise TypeError(f"article_ids: an article id is a string of digits or an int (as in articles.csv), "
                            f"got {type(article).__name__} {article!r}")
        try:
            key = int(article)
        except ValueError:
            raise UsageError(f"article_ids: an article id must be digits (as in articles.csv), got {article!r}") from None
        index = self._served.article_index.get(key)
        if index is None:
            raise InputError(f"article {article} is not in tables/articles.parquet")
        return index


def _customer_ids(values: Sequence[str]) -> list[str]:
    """`customer_ids` as strings in canonical form: a non-string is a TypeError naming its position."""
    from hmgnn.recommend import check_customer_id

    ids = _as_list(values, "customer_ids")
    for n, c in enumerate(ids):
        if not isinstance(c, str):
            raise TypeError(f"customer_ids[{n}] must be a string (a 64-hex customer id as in customers.csv), got "
                            f"{type(c).__name__} {c!r}")
    out = []
    for n, c in enumerate(ids):
        try:
            out.append(check_customer_id(c))
        except InputError as exc:  # an argument error: a ValueError naming the argument
            raise UsageError(f"customer_ids[{n}]: {exc}") from None
    return out


def _as_list(values: Sequence, name: str) -> list:
    if isinstance(values, (str, bytes)):
        return [values]  # one id given where a list is expected
    try:
        return list(values)
    except TypeError:
        raise TypeError(f"{name} must be a list of ids") from None

"""One customer's answer, and the stored answers that `hmgnn recommend --customer-id` reads without loading a model.

`hmgnn train` (with `recommend.precompute`) ranks every customer once with the model that `recommend` answers with
by default and stores each customer's top-k, with `why` and `sources`, beside the model: answers.parquet (sorted
by customer id, so one customer's rows are found from the row groups' statistics) and answers.json (the model, k,
and the size, modification time and fingerprint of every file the answers depend on). A shell script's call for one
customer then reads one row group instead of importing torch and LightGBM and passing messages over every
purchase. The store is used only where it answers exactly as the model would: the same model asked, k at most the
stored k, no `--filter-bought`, and every input file unchanged; otherwise `recommend` ranks as before.

This module imports neither torch nor the models, so that the lookup costs the Python start-up and one parquet read.
"""

from __future__ import annotations

import json
import os
import re
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from hmgnn import artifacts as A
from hmgnn.errors import InputError

CUSTOMER_ID = re.compile(r"[0-9a-f]{64}")
DISPLAY_COLUMNS = ["prod_name", "product_type_name", "colour_group_name"]
"""The article fields an answer shows beside the id (recommend's table and JSON, serve, the Python API)."""
UNKNOWN_CUSTOMER = "customer id not in tables/customers.parquet: this week's global bestsellers"

STORE_PARQUET = "answers.parquet"
STORE_JSON = "answers.json"
UNKNOWN_KEY = ""
"""The customer_id under which the store keeps the answer to an id that is not in customers.parquet."""
CUSTOMERS_PER_GROUP = 2_048
"""Customers per parquet row group: a lookup reads one group."""


@dataclass
class CustomerRecommendations:
    """One customer's top-k: article rows best first (each with `why` and `sources`, see `recommend.explained`),
    and why a fallback was used (None when personal)."""

    customer_id: str
    model: str
    k: int
    fallback: str | None
    recommendations: list[dict[str, Any]] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def check_customer_id(text: str) -> str:
    """The id in canonical (lower-case) form; anything but 64 hex characters is an InputError."""
    cid = text.strip().lower()
    if not CUSTOMER_ID.fullmatch(cid):
        shown = text if len(text) <= 70 else text[:67] + "..."
        raise InputError(f"customer id must be 64 hexadecimal characters (as in customers.csv), got {shown!r} "
                         f"({len(text)} characters)")
    return cid


def render_table(recs: CustomerRecommendations):
    """A rich table of one customer's recommendations, with the fallback (if any) in the caption."""
    from rich.table import Table

    table = Table(title=f"top {len(recs.recommendations)} for {recs.customer_id[:16]}... ({recs.model})",
                  caption=f"fallback: {recs.fallback}" if recs.fallback else None)
    for name, justify in (("rank", "right"), ("article_id", "left"), ("prod_name", "left"),
                          ("product_type_name", "left"), ("colour_group_name", "left"), ("score", "right"),
                          ("why", "left")):
        table.add_column(name.replace("_name", "").replace("_", " "), justify=justify)
    for r in recs.recommendations:
        table.add_row(str(r["rank"]), r["article_id"], *(str(r[c] or "") for c in DISPLAY_COLUMNS), f"{r['score']:.4g}",
                      r["why"])
    return table


# ---- the store ------------------------------------------------------------------------------------------------

def store_dir(workdir: str | Path) -> Path:
    """Where the answers live: the model folder (<workdir>/model, or the model folder given as the workdir)."""
    return A.locate(workdir).model


def _inputs(where: A.Location) -> dict[str, Path]:
    """Every file the default model's answers depend on, by a name that stays valid when the model folder is
    copied: the model folder's own files (the model, its node features and its copies of the tables), and for a
    workdir also the tables and graph it reads there."""
    model = where.model
    files = {"model/" + name: model / name for name in (A.MODEL_PT, A.MANIFEST, *A.PORTABLE_FILES)}
    if not where.model_folder:
        files |= {"tables/" + name: where.tables / name
                  for name in (A.TRANSACTIONS_PARQUET, A.CUSTOMERS_PARQUET, A.ARTICLES_PARQUET)}
        files["graph/" + A.GRAPH_PT] = A.step_dir(where.path, A.GRAPH) / A.GRAPH_PT  # the model checks it was its graph
    return {name: path for name, path in files.items() if path.is_file()}


def _describe(path: Path) -> dict[str, Any]:
    st = path.stat()
    return {"bytes": st.st_size, "mtime_ns": st.st_mtime_ns, "fingerprint": A.fingerprint(path)}


def _unchanged(path: Path, recorded: dict[str, Any]) -> bool:
    """The file is the one the answers were computed from: the same size, and the same modification time or (a
    copied folder) the same content."""
    try:
        st = path.stat()
    except OSError:
        return False
    if st.st_size != recorded.get("bytes"):
        return False
    return st.st_mtime_ns == recorded.get("mtime_ns") or A.fingerprint(path) == recorded.get("fingerprint")


def current(workdir: str | Path) -> dict[str, Any] | None:
    """The store's record (answers.json) where the store exists and every input is unchanged, else None."""
    where = A.locate(workdir)
    folder = where.model
    try:
        meta = json.loads((folder / STORE_JSON).read_text())
    except (OSError, ValueError):
        return None
    if not isinstance(meta, dict) or meta.get("version") != A.__version__ or not (folder / STORE_PARQUET).is_file():
        return None  # another hmgnn's answers may differ from this one's
    inputs = _inputs(where)
    recorded = meta.get("inputs")
    if not isinstance(recorded, dict):
        return None
    # a copy of the model folder reads its own files alone: the workdir's that the store also records are not there
    expected = {n for n in recorded if n.startswith("model/")} if where.model_folder else set(recorded)
    if set(inputs) != expected:
        return None
    if not all(_unchanged(inputs[name], recorded[name]) for name in inputs):
        return None
    return meta


def lookup(workdir: str | Path, asked: str, customer_id: str, k: int,
           filter_bought: bool = False) -> CustomerRecommendations | None:
    """The stored answer for one customer, exactly as `recommend.recommend_customer` would give it, or None where
    the store cannot give it (none stored, an input changed, another model asked, more than the stored k, or
    `filter_bought`). A malformed id is an InputError here as there."""
    cid = check_customer_id(customer_id)
    if filter_bought:
        return None
    meta = current(workdir)
    if meta is None or asked not in meta.get("asked", ()) or not 1 <= k <= int(meta.get("k", 0)):
        return None
    import pyarrow.compute as pc
    import pyarrow.parquet as pq

    path = store_dir(workdir) / STORE_PARQUET
    table = pq.read_table(path, filters=[("customer_id", "in", [cid, UNKNOWN_KEY])])
    known = table.filter(pc.equal(table["customer_id"], cid))
    rows = (known if known.num_rows else table.filter(pc.equal(table["customer_id"], UNKNOWN_KEY))).to_pylist()
    rows.sort(key=lambda r: r["rank"])
    if not rows:  # a store without the unknown id's answer
        return None
    if meta.get("note"):
        from hmgnn.console import info

        info(meta["note"])
    fallback = rows[0]["fallback"]
    recs = [{"rank": r["rank"], "article_id": r["article_id"], **{c: r[c] for c in DISPLAY_COLUMNS},
             "score": round(float(r["score"]), 6), "why": r["why"], "sources": list(r["sources"])}
            for r in rows[:k]]
    return CustomerRecommendations(cid, meta["model"], k, fallback, recs)


def write(workdir: str | Path, rows: Any, *, model: str, asked: list[str], k: int, note: str | None,
          customers: int) -> Path:
    """Store `rows` (a pyarrow Table, one row per customer and rank: customer_id, rank, article_id, the
    DISPLAY_COLUMNS, score, why, sources, fallback; sorted by customer_id), and its record, in place of any store
    before; the record goes last, so a store cut short is never read."""
    import pyarrow.parquet as pq

    folder = store_dir(workdir)
    record = folder / STORE_JSON
    record.unlink(missing_ok=True)  # from here on the old store is not read, whatever happens
    parquet = folder / STORE_PARQUET
    tmp = A.atomic_path(parquet)
    try:
        pq.write_table(rows, tmp, row_group_size=max(1, CUSTOMERS_PER_GROUP * k))
        os.replace(tmp, parquet)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    meta = {"version": A.__version__, "model": model, "asked": asked, "k": k, "note": note, "customers": customers,
            "inputs": {name: _describe(path) for name, path in _inputs(A.locate(workdir)).items()}}
    A.atomic_write_text(record, json.dumps(meta, indent=2) + "\n")
    return parquet

"""The self-contained model folder: what `hmgnn train` copies into model/ beside model.pt (node features, purchases,
id maps, the article fields shown), so that the folder, copied anywhere, loads and answers as its workdir does.

A folder is loaded by passing it where a workdir goes (`hmgnn recommend --model-dir`, `hmgnn.load(folder)`); the
checks here stand in for the workdir's lineage checks: every file is the one written with this model.pt.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import polars as pl
import torch

from hmgnn import artifacts as A
from hmgnn.answers import DISPLAY_COLUMNS  # the article fields recommend and serve show
from hmgnn.errors import InputError, MissingArtifactError

PURCHASE_COLUMNS = ["customer_index", "article_index", "t_dat", "price"]
"""The columns of tables/transactions.parquet that a model folder copies and `recommend` fits on (every row, in
order; price for the ranker's price features, which it learned with prices)."""
COPIED_CUSTOMER_COLUMNS = ["customer_index", "customer_id", "age"]
"""The customer id map, and the age that picks a cold customer's age band for the fallback."""
ARTICLE_META_COLUMNS = ["product_code", "product_type_no", "department_no", "section_no", "garment_group_no",
                        "detail_desc"]
"""What `hmgnn update` reads to place new articles beside the known ones: the codes of the pair features' article
categories (`ranking.features.ArticleMeta`) and the description whose embedding a new colour variant shares."""
RECOPY = "copy the whole model/ folder again from its workdir (`hmgnn train --force` there rewrites it)"


def write(folder: Path, tables: Path, customer_x: torch.Tensor, article_x: torch.Tensor) -> dict[str, dict[str, Any]]:
    """Write `A.PORTABLE_FILES` into `folder` (a step folder under construction, renamed into place when whole)
    from `tables` and the static node features; returns each file's bytes and fingerprint, for model.pt to record."""
    write_features(folder / A.FEATURES_PT, customer_x, article_x)
    for name in A.PORTABLE_FILES[1:]:
        present = pl.read_parquet_schema(tables / name)
        columns = [c for c in copied_columns(name) if c in present]
        pl.read_parquet(tables / name, columns=columns).write_parquet(folder / name, compression="zstd")
    return files_record({name: folder / name for name in A.PORTABLE_FILES})


def copied_columns(name: str) -> list[str]:
    """The columns of tables/<name> that the model folder's copy holds (those the table has)."""
    return {A.TRANSACTIONS_PARQUET: PURCHASE_COLUMNS, A.CUSTOMERS_PARQUET: COPIED_CUSTOMER_COLUMNS,
            A.ARTICLES_PARQUET: ["article_index", "article_id", *DISPLAY_COLUMNS, *ARTICLE_META_COLUMNS]}[name]


def write_features(path: Path, customer_x: torch.Tensor, article_x: torch.Tensor) -> None:
    """features.pt: the static node features, packed (`pack_rows`)."""
    A.save_torch({"customer": pack_rows(customer_x), "article": pack_rows(article_x)}, path)


def files_record(paths: dict[str, Path]) -> dict[str, dict[str, Any]]:
    """model.pt's "files": each copied file's bytes and fingerprint (`paths`: name -> where it is written now)."""
    return {name: {"bytes": path.stat().st_size, "fingerprint": A.fingerprint(path)} for name, path in paths.items()}


def pack_rows(x: torch.Tensor) -> dict[str, torch.Tensor]:
    """A float32 matrix as its distinct rows in CSR form plus, per row, which distinct row it is: exact (rows and
    values compared bit for bit), and small where rows repeat (customers: a few categorical fields and an age) or
    are mostly zeros (articles: one-hot categories beside a short text embedding)."""
    a = np.ascontiguousarray(x.detach().cpu().numpy().astype(np.float32, copy=False))
    n, d = a.shape
    if n == 0 or d == 0:  # no rows, or every row the same empty one
        distinct, inverse = a[:1], np.zeros(n, np.int64)
    else:
        rows_as_bytes = a.view(np.dtype((np.void, 4 * d))).ravel()
        _, first, inverse = np.unique(rows_as_bytes, return_index=True, return_inverse=True)
        distinct = a[first]
    row, col = np.nonzero(distinct.view(np.int32))  # bit test: a -0.0 is kept as it is
    crow = np.zeros(len(distinct) + 1, np.int64)
    np.cumsum(np.bincount(row, minlength=len(distinct)), out=crow[1:])
    return {"shape": torch.tensor([n, d]), "row": torch.from_numpy(inverse.reshape(-1).astype(np.int32)),
            "crow": torch.from_numpy(crow), "col": torch.from_numpy(col.astype(np.int16 if d < 2**15 else np.int32)),
            "value": torch.from_numpy(distinct[row, col])}


def unpack_rows(packed: dict[str, torch.Tensor]) -> torch.Tensor:
    """The matrix `pack_rows` packed, float32 [n, d]."""
    n, d = (int(v) for v in packed["shape"].tolist())
    crow = packed["crow"].numpy()
    distinct = np.zeros((len(crow) - 1, d), np.float32)
    distinct[np.repeat(np.arange(len(crow) - 1), np.diff(crow)), packed["col"].numpy()] = packed["value"].numpy()
    x = distinct[packed["row"].numpy()]
    if x.shape != (n, d):
        raise ValueError(f"{x.shape[0]} x {x.shape[1]} rebuilt, {n} x {d} recorded")
    return torch.from_numpy(x)


def check_folder(folder: Path) -> None:
    """Refuse a model folder that is not whole before anything is read from it: model.pt, the manifest and the
    copied data present, each with the size and fingerprint `hmgnn train` recorded in the manifest."""
    missing = [name for name in (A.MODEL_PT, A.MANIFEST, *A.PORTABLE_FILES) if not (folder / name).is_file()]
    if missing:
        raise MissingArtifactError(f"{folder} lacks {', '.join(missing)}, so it cannot answer without its workdir "
                                   f"(a copy in part, or written by an older hmgnn); {RECOPY}")
    A.check_outputs(folder, A.read_manifest(folder) or {}, "hmgnn train", fix=RECOPY)


def recipe(folder: Path) -> str:
    """The recipe a model folder holds (`gnn` or `reference`), from its manifest (model.pt is not read)."""
    config = (A.read_manifest(folder) or {}).get("config") or {}
    return str((config.get("train") or {}).get("recipe") or "gnn")


def read_features(folder: Path, files: dict[str, Any],
                  model_args: dict[str, Any]) -> tuple[torch.Tensor, torch.Tensor]:
    """The static node features (customers, articles) of a model folder, after checking that each copied file is
    the one written with its model.pt (the folder's counterpart of the graph.pt fingerprint a workdir checks):
    `files` and `model_args` are that checkpoint's (`hmgnn.ranking.checkpoint.Checkpoint`)."""
    for name in A.PORTABLE_FILES:
        entry = files.get(name)
        if not isinstance(entry, dict) or not A.same_fingerprint(folder / name, entry.get("fingerprint")):
            raise InputError(f"{folder / name} is not the file written with {folder / A.MODEL_PT}; {RECOPY}")
    packed = A.load_torch(folder / A.FEATURES_PT, A.MODEL)
    try:
        customer_x, article_x = unpack_rows(packed["customer"]), unpack_rows(packed["article"])
    except (KeyError, TypeError, ValueError, IndexError, AttributeError) as exc:
        raise InputError(f"{folder / A.FEATURES_PT} does not hold the packed node features "
                         f"({type(exc).__name__}: {exc}); {RECOPY}") from None
    expected = [model_args["num_customers"], model_args["customer_channels"], model_args["num_articles"],
                model_args["article_channels"]]
    if [*customer_x.shape, *article_x.shape] != expected:
        raise InputError(f"{folder / A.FEATURES_PT} holds {customer_x.shape[0]} x {customer_x.shape[1]} customer and "
                         f"{article_x.shape[0]} x {article_x.shape[1]} article features, the model expects "
                         f"{expected[0]} x {expected[1]} and {expected[2]} x {expected[3]}; {RECOPY}")
    return customer_x, article_x

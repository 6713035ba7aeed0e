"""`hmgnn update`: a later week of purchases (and the customers and articles new in it) added to a trained model
without training it again, so that recommend, serve and `hmgnn.load` answer as of the new last day.

GraphSAGE is inductive: the trained weights pass messages over whatever purchases they are given, and the ranker's
features are counts as of a day. So an update appends the new rows to the tables (and to each model folder's own
copies of them), places new customers and articles through their features (the graph step's encoding, its
vocabulary and scaling kept) with all-zero ID embeddings, and leaves the weights as they are; `--refit-ranker` also
fits the LightGBM ranker again on the newest label window. Every file is written under a temporary name first and
renamed into place only when all of them are complete: a failed update leaves every folder as it was.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
import os
import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl
import torch

from hmgnn import artifacts as A
from hmgnn.ranking import checkpoint as C
from hmgnn import graph, ingest, portable
from hmgnn.config import Config, RankerConfig
from hmgnn.console import info, progress
from hmgnn.errors import InputError, UsageError

STEP = "update"


@dataclass
class Place:
    """Where an update reads and writes, decided once at the door: a workdir (its tables/ and graph/, and every
    trained model folder in it) or a model folder alone (its own copies of the tables).

    Args:
        data: the folder whose tables are the current data (tables/, or the model folder's copies).
        graph: graph/ in a workdir, None for a model folder alone.
        folders: the model folders updated (model/, and reference/ where trained).
    """

    data: Path
    graph: Path | None
    folders: list[Path]

    @property
    def workdir(self) -> bool:
        return self.graph is not None

    @classmethod
    def of(cls, workdir: Path) -> Place:
        if A.locate(workdir).model_folder:
            parent = workdir.parent
            if (parent / A.TABLES).is_dir() and (parent / A.GRAPH).is_dir() and workdir.name in (A.MODEL, A.REFERENCE):
                raise UsageError(f"{workdir} is the model folder of the workdir {parent}: update the workdir, which "
                                 f"updates its tables and every model in it (hmgnn update -w {parent} --raw ...)")
            portable.check_folder(workdir)
            return cls(workdir, None, [workdir])
        tables, graph_dir = workdir / A.TABLES, workdir / A.GRAPH
        A.require(tables, [A.TRANSACTIONS_PARQUET, A.CUSTOMERS_PARQUET, A.ARTICLES_PARQUET], A.TABLES)
        A.require(graph_dir, [A.GRAPH_PT, A.FEATURE_NAMES], A.GRAPH)
        folders = [workdir / name for name in (A.MODEL, A.REFERENCE) if A.has_checkpoint(workdir / name)]
        if not folders:
            raise InputError(f"{workdir} holds no trained model to update; run `hmgnn train` first (update adds "
                             "purchases to a trained model without training it again)")
        A.check_lineage([tables, graph_dir, *folders])  # everything fits together before anything changes
        return cls(tables, graph_dir, folders)


@dataclass
class Staged:
    """Files written under temporary names, renamed into place together (`commit`) or removed (`discard`)."""

    files: list[tuple[Path, Path]] = dataclasses.field(default_factory=list)

    def path(self, final: Path) -> Path:
        """Where to write the new content of `final` now."""
        staged = final.parent / f".{final.name}.update-{os.getpid()}"
        self.files.append((staged, final))
        return staged

    def commit(self) -> None:
        """Every staged file into place; should a rename fail, the ones done are undone (each old file is kept
        under a hard link until all are in place)."""
        done: list[tuple[Path | None, Path]] = []
        with A.uninterrupted():
            try:
                for staged, final in self.files:
                    backup = None
                    if final.exists():
                        backup = final.parent / f".{final.name}.before-update-{os.getpid()}"
                        backup.unlink(missing_ok=True)
                        try:
                            os.link(final, backup)
                        except OSError:  # a file system without hard links
                            shutil.copy2(final, backup)
                    done.append((backup, final))
                    os.replace(staged, final)
            except BaseException:
                for backup, final in reversed(done):
                    if backup is None:
                        final.unlink(missing_ok=True)
                    elif backup.exists():
                        os.replace(backup, final)
                self.discard()
                raise
            for backup, _ in done:
                if backup is not None:
                    backup.unlink(missing_ok=True)
        self.files.clear()

    def discard(self) -> None:
        for staged, _ in self.files:
            staged.unlink(missing_ok=True)
        self.files.clear()


def run(cfg: Config, raw: Path, refit_ranker: bool = False) -> dict[str, Any]:
    """Add the purchases in `raw` (after the data's last day; with new customers and articles) to the workdir
    `cfg.workdir` or the model folder there, as described above. Returns the update's record (also kept in each
    model.pt, its manifest and its model card)."""
    started = time.perf_counter()
    raw = Path(raw)
    if not raw.exists():
        raise UsageError(f"--raw {raw} does not exist; pass the folder with the new purchases "
                         f"({A.TRANSACTIONS_CSV}, and {A.CUSTOMERS_CSV} / {A.ARTICLES_CSV} with the new rows)")
    A.forget_fingerprints()
    place = Place.of(Path(cfg.workdir))
    claimed = [place.data, *([place.graph] if place.graph else []), *place.folders]
    claimed = list(dict.fromkeys(claimed))
    for folder in claimed:
        A.claim(folder, STEP)
    scratch = place.data.parent / f".{place.data.name}.tmp-{os.getpid()}"  # swept as a dead writer's, if killed
    staged = Staged()
    try:
        scratch.mkdir(exist_ok=True)
        record = _update(cfg, place, raw, refit_ranker, scratch, staged)
        record["seconds"] = round(time.perf_counter() - started, 1)
        staged.commit()
    except BaseException:
        staged.discard()
        raise
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
        for folder in claimed:
            A.release(folder)
    A.forget_fingerprints()
    from hmgnn import recommend

    recommend.store_answers(cfg, STEP)  # the stored answers were of the data before
    return record


def _update(cfg: Config, place: Place, raw: Path, refit_ranker: bool, scratch: Path,
            staged: Staged) -> dict[str, Any]:
    checkpoints = {folder: C.load(folder / A.MODEL_PT, folder.name) for folder in place.folders}
    first = checkpoints[place.folders[0]]
    if refit_ranker and not any(c.ranker for c in checkpoints.values()):
        raise UsageError(f"--refit-ranker: {', '.join(map(str, place.folders))} holds no ranker (the reference "
                         "recipe ranks by the GNN alone); update without it")
    customers = pl.read_parquet(place.data / A.CUSTOMERS_PARQUET)
    articles = pl.read_parquet(place.data / A.ARTICLES_PARQUET)
    transactions = pl.read_parquet(place.data / A.TRANSACTIONS_PARQUET)
    last_day = transactions["t_dat"].max()
    if last_day is None:
        raise InputError(f"{place.data / A.TRANSACTIONS_PARQUET} holds no purchases to add to")
    added = ingest.read_update(raw, customers, articles, last_day, scratch, lenient=cfg.ingest.lenient)
    record = {"at": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"), "source": str(raw),
              "from": str(added.first_day), "through": str(added.last_day), "transactions": added.transactions.height,
              "new_customers": added.customers.height, "new_articles": added.articles.height,
              "ranker_refit": refit_ranker}
    info(f"update: {added.transactions.height:,} purchases from {added.first_day} to {added.last_day} "
         f"({counted(record)}) after {last_day}")
    if added.articles.height and "product_code" not in articles.columns:
        raise InputError(f"{place.data / A.ARTICLES_PARQUET} lacks the article categories that place new articles "
                         f"(written by an older hmgnn); {portable.RECOPY}, or update the workdir")

    with progress(transient=True, unit="parts") as bar:
        task = bar.add_task("new node features", total=2 + len(place.folders))
        # the new rows of the node features, encoded as the graph step encoded the rows it saw
        customer_x, article_x = portable.read_features(place.folders[0], first.files, first.model_args)
        new_customer_x, new_article_x = new_features(first, customers, articles, article_x, added)
        customers_all = _appended(customers, added.customers)
        articles_all = _appended(articles, added.articles)
        transactions_all = _appended(transactions, added.transactions)
        bar.update(task, advance=1, description="tables")
        changed = {A.TRANSACTIONS_PARQUET: transactions_all}
        if added.customers.height:
            changed[A.CUSTOMERS_PARQUET] = customers_all
        if added.articles.height:
            changed[A.ARTICLES_PARQUET] = articles_all
        written: dict[str, Path] = {}  # where the workdir's new tables and graph.pt are staged
        if place.workdir:
            written = _write_tables(place.data, changed, record, staged)
            written[A.GRAPH_PT] = _write_graph(place.graph, written, new_customer_x, new_article_x, added, record,
                                               staged)
        bar.update(task, advance=1)
        records = []
        for folder, checkpoint in checkpoints.items():
            bar.update(task, description=f"{folder.name}/: weights, copies, model card"
                                         + (", the ranker fit again" if refit_ranker else ""))
            if place.workdir and folder != place.folders[0]:
                customer_x, article_x = portable.read_features(folder, checkpoint.files, checkpoint.model_args)
            records.append(_write_folder(
                cfg, folder, checkpoint, torch.cat([customer_x, torch.from_numpy(new_customer_x)]),
                torch.cat([article_x, torch.from_numpy(new_article_x)]), changed, transactions_all, customers_all,
                articles_all if added.articles.height else None, record, written, refit_ranker, staged))
            bar.update(task, advance=1)
    return records[0]


def new_features(checkpoint: C.Checkpoint, customers: pl.DataFrame, articles: pl.DataFrame,
                 article_x: torch.Tensor, added: ingest.Additions) -> tuple[np.ndarray, np.ndarray]:
    """The static node features of the new customers and articles, in the trained graph's columns: its one-hot
    vocabularies (a value it never saw is encoded as a missing one, all zeros in its block) and its age scaling
    (the median and spread of the ages it was built from). A new article whose description a known article has
    gets that article's text embedding (the SVD is not fit again); another description gets zeros, as an empty one."""
    names = checkpoint.feature_names
    built = _built_customers(checkpoint)  # the customers the graph step saw: their ages set the scaling
    seen = customers.head(built)
    known = seen["known"].to_numpy() if "known" in seen.columns else np.ones(seen.height, bool)
    scaling = graph.age_scaling(seen["age"].cast(pl.Float64).to_numpy(), known)
    customer_x = graph.customer_features(added.customers, names["customer"], scaling)[0]

    text_dim = sum(n.startswith("desc_svd_") for n in names["article"])
    text = np.zeros((added.articles.height, text_dim), np.float32)
    if added.articles.height and text_dim:
        described = articles.select("article_index", pl.col("detail_desc").str.strip_chars().alias("d")).filter(
            pl.col("d").is_not_null() & (pl.col("d") != "")).unique("d", keep="first", maintain_order=True)
        first_with = dict(zip(described["d"].to_list(), described["article_index"].to_list()))
        for row, desc in enumerate(added.articles["detail_desc"].str.strip_chars().to_list()):
            if desc and desc in first_with:
                text[row] = article_x[first_with[desc], -text_dim:].numpy()
    article_x_new = graph.article_features(added.articles, 0, 0, 0, names["article"], text)[0]
    return customer_x, article_x_new


def _built_customers(checkpoint: C.Checkpoint) -> int:
    """How many customers the graph the model was trained with held (updates append after them)."""
    return checkpoint.model_args["num_customers"] - sum(u["new_customers"] for u in checkpoint.updates)


def _appended(frame: pl.DataFrame, rows: pl.DataFrame) -> pl.DataFrame:
    """`frame` with `rows` after it, in `frame`'s columns and types (a column `rows` lacks is null)."""
    return pl.concat([frame, rows], how="diagonal_relaxed").select(frame.columns).cast(frame.schema)


def _write_tables(tables: Path, frames: dict[str, pl.DataFrame], record: dict[str, Any],
                  staged: Staged) -> dict[str, Path]:
    """The changed tables of tables/ and its manifest (outputs, rows, the update), staged; returns where each was
    written."""
    paths = {}
    for name, frame in frames.items():
        paths[name] = staged.path(tables / name)
        frame.write_parquet(paths[name], compression_level=1)  # ingest's level
    manifest = A.read_manifest(tables)
    if manifest is not None:
        _refresh(manifest.get("outputs") or [], paths)
        rows = manifest.setdefault("rows", {})
        for name, frame in frames.items():
            rows[name.removesuffix(".parquet")] = frame.height
        manifest.setdefault("updates", []).append(record)
        A.atomic_write_text(staged.path(tables / A.MANIFEST), json.dumps(manifest, indent=2, default=str) + "\n")
    return paths


def _refresh(entries: list[dict[str, Any]], paths: dict[str, Path], folder: str | None = None) -> None:
    """Give each manifest entry naming one of `paths` (by its `path`'s file name; with `folder`, only entries in a
    folder of that name) the bytes and fingerprint of the file written there."""
    for entry in entries:
        recorded = Path(entry.get("path", ""))
        if recorded.name in paths and (folder is None or recorded.parent.name == folder):
            entry["bytes"] = paths[recorded.name].stat().st_size
            entry["fingerprint"] = A.fingerprint(paths[recorded.name])


def _write_graph(graph_dir: Path, tables: dict[str, Path], customer_x: np.ndarray, article_x: np.ndarray,
                 added: ingest.Additions, record: dict[str, Any], staged: Staged) -> Path:
    """graph.pt with the new nodes' features and one edge per new purchase (after the others, as the tables' rows
    are), and its manifest (the tables it now fits, its rows, the update); returns where graph.pt is staged."""
    data = graph.load_graph(graph_dir / A.GRAPH_PT)
    data["customer"].x = torch.cat([data["customer"].x, torch.from_numpy(customer_x)])
    data["article"].x = torch.cat([data["article"].x, torch.from_numpy(article_x)])
    edges = graph.purchase_edges(added.transactions)
    data[graph.BUYS].edge_index = torch.cat([data[graph.BUYS].edge_index, edges["edge_index"]], dim=1)
    data[graph.REV_BUYS].edge_index = data[graph.BUYS].edge_index.flip(0)
    for name in ("time", "price", "sales_channel"):
        data[graph.BUYS][name] = data[graph.REV_BUYS][name] = torch.cat([data[graph.BUYS][name], edges[name]])
    path = staged.path(graph_dir / A.GRAPH_PT)
    A.save_torch(data, path)
    manifest = A.read_manifest(graph_dir) or {}
    _refresh(manifest.get("inputs") or [], tables, folder=A.TABLES)
    _refresh(manifest.get("outputs") or [], {A.GRAPH_PT: path})
    manifest.setdefault("rows", {}).update(customers=int(data["customer"].x.shape[0]),
                                           articles=int(data["article"].x.shape[0]),
                                           edges=int(data[graph.BUYS].edge_index.shape[1]))
    manifest.setdefault("updates", []).append(record)
    A.atomic_write_text(staged.path(graph_dir / A.MANIFEST), json.dumps(manifest, indent=2, default=str) + "\n")
    return path


def _write_folder(cfg: Config, folder: Path, checkpoint: C.Checkpoint, customer_x: torch.Tensor,
                  article_x: torch.Tensor, changed: dict[str, pl.DataFrame], transactions: pl.DataFrame,
                  customers: pl.DataFrame, articles: pl.DataFrame | None, record: dict[str, Any],
                  workdir_files: dict[str, Path], refit_ranker: bool, staged: Staged) -> dict[str, Any]:
    """A model folder brought up to the new data: its copies of the tables (`changed`) and node features, model.pt
    (the ID embeddings padded with zero rows, the article categories where `articles` are new, the copies'
    fingerprints, graph.pt's, the ranker refit where asked), the model card and the manifest (`workdir_files`: the
    workdir's staged tables and graph.pt, which it records as its inputs; none for a model folder alone)."""
    paths = {A.FEATURES_PT: staged.path(folder / A.FEATURES_PT)}
    portable.write_features(paths[A.FEATURES_PT], customer_x, article_x)
    for name, frame in changed.items():
        paths[name] = staged.path(folder / name)
        frame.select(c for c in portable.copied_columns(name) if c in frame.columns).write_parquet(
            paths[name], compression="zstd")
    files = {name: paths.get(name, folder / name) for name in A.PORTABLE_FILES}
    args = dict(checkpoint.model_args)
    grow = {"customer": customer_x.shape[0] - args["num_customers"],
            "article": article_x.shape[0] - args["num_articles"]}
    args["num_customers"], args["num_articles"] = int(customer_x.shape[0]), int(article_x.shape[0])
    state = dict(checkpoint.state_dict)
    for kind, n in grow.items():
        key = f"embedding.{kind}.weight"
        if key in state and n:
            # a new node starts from no ID of its own: its features and its purchases (message passing) place it
            state[key] = torch.cat([state[key], state[key].new_zeros(n, state[key].shape[1])])
    new = dataclasses.replace(checkpoint, model_args=args, state_dict=state)
    if articles is not None:
        from hmgnn.ranking.features import ArticleMeta

        new.article_meta = ArticleMeta.from_frame(articles.sort("article_index")).to_dict()
    if A.GRAPH_PT in workdir_files:
        new.graph_fingerprint = A.fingerprint(workdir_files[A.GRAPH_PT])
    record = dict(record, ranker_refit=refit_ranker and new.ranker is not None)
    if record["ranker_refit"]:
        from hmgnn.device import resolve_device

        record["ranker"] = _refit_ranker(new, customer_x, article_x, transactions, customers,
                                         str(resolve_device(cfg.train.device, strict=False)))
    new.files = portable.files_record(files)
    new.updates = [*checkpoint.updates, dict(record)]
    data = new.to_dict()
    C.check(data, folder / A.MODEL_PT)  # what every load checks, before anything is renamed into place
    paths[A.MODEL_PT] = staged.path(folder / A.MODEL_PT)
    A.save_torch(data, paths[A.MODEL_PT])

    card = folder / A.MODEL_CARD
    if card.is_file():
        paths[A.MODEL_CARD] = staged.path(card)
        A.atomic_write_text(paths[A.MODEL_CARD], model_card_with(card.read_text(encoding="utf-8"), record))
    manifest = A.read_manifest(folder) or {}
    _refresh(manifest.get("outputs") or [], paths)
    # in a workdir: the tables and graph.pt it now fits
    _refresh(manifest.get("inputs") or [], {n: p for n, p in workdir_files.items() if n != A.GRAPH_PT},
             folder=A.TABLES)
    _refresh(manifest.get("inputs") or [], {n: p for n, p in workdir_files.items() if n == A.GRAPH_PT},
             folder=A.GRAPH)
    manifest.setdefault("updates", []).append(record)
    A.atomic_write_text(staged.path(folder / A.MANIFEST), json.dumps(manifest, indent=2, default=str) + "\n")
    return record


def _refit_ranker(checkpoint: C.Checkpoint, customer_x: torch.Tensor, article_x: torch.Tensor,
                  transactions: pl.DataFrame, customers: pl.DataFrame, device: str) -> dict[str, Any]:
    """Fit the checkpoint's rankers (`gnn`'s and `ranker-only`'s) again, as `hmgnn train` fits them (its ranker
    settings and seed), on one label window: the newest `sample.val_days` days, features as of the day before it, the
    GNN's message pass (its weights kept) over the purchases up to that day; the new rankers replace `checkpoint`'s.
    Returns what the model card records."""
    from hmgnn.models.gnn import HeteroSAGE
    from hmgnn.ranking.recommender import ranker_scores
    from hmgnn.ranking.features import ArticleMeta
    from hmgnn.ranking.fit import fit_ranker, label_windows

    rc = dataclasses.replace(RankerConfig(**checkpoint.config["ranker"]), windows=1)  # the newest window only
    days = int(checkpoint.config["sample"]["val_days"])
    ages = customers.sort("customer_index")["age"].fill_null(-1).to_numpy().astype(np.int16)
    # the purchases as `recommend` reads them, so that the features the ranker learns from are the ones it will be
    # given, in a workdir and a model folder alike
    purchases = A.TablesSummary(customers.height, article_x.shape[0], ages).interactions(
        transactions.select(c for c in portable.PURCHASE_COLUMNS if c in transactions.columns))
    end = transactions["t_dat"].max()
    windows = label_windows(purchases, end - dt.timedelta(days=days), end, rc)
    model = HeteroSAGE.from_args(checkpoint.model_args)
    model.load_state_dict(checkpoint.state_dict)
    model.eval()
    gnn_as_of = ranker_scores(model, checkpoint.recipe, checkpoint.time_features, customer_x, article_x,
                              torch.device(device), edge_half_life=float(checkpoint.train_config["edge_half_life"]))

    try:
        ranker, ranker_only, report = fit_ranker(purchases, windows, ArticleMeta.from_dict(checkpoint.article_meta),
                                                 rc, gnn_as_of, checkpoint.seed)
    except ValueError as exc:
        raise InputError(f"--refit-ranker: the ranker cannot be fit on the label window after {windows[0].as_of} "
                         f"({exc}); update without --refit-ranker, or add more days of purchases") from None
    checkpoint.ranker = ranker.to_dict()
    if ranker_only is not None and checkpoint.ranker_only is not None:
        checkpoint.ranker_only = ranker_only.to_dict()
    window = windows[0]
    return {"window": f"{window.as_of + dt.timedelta(days=1)}..{window.end}", "customers": int(window.customers),
            "rows": int(report["rows"]), "trees": int(report["trees"])}


def counted(record: dict[str, Any]) -> str:
    """"2 new customers, 1 new article": what an update's record added besides purchases."""
    return ", ".join(f"{n:,} new {kind}{'' if n == 1 else 's'}"
                     for kind, n in (("customer", record["new_customers"]), ("article", record["new_articles"])))


def model_card_with(card: str, record: dict[str, Any]) -> str:
    """The model card with one more line under "## Updates" (the section added at the end by the first update)."""
    line = (f"- {record['at']}: {record['transactions']:,} purchases from {record['from']} to {record['through']} "
            f"added ({counted(record)}); "
            + ("the ranker was fit again on the newest label window" + (f" ({record['ranker']['window']})"
                                                                       if "ranker" in record else "")
               if record["ranker_refit"] else "the ranker was kept") + "; the GNN's weights were kept.")
    heading = "## Updates"
    if heading not in card:
        card = (card.rstrip("\n") + f"\n\n{heading}\n\n`hmgnn update` added purchases after training, without "
                "training again: the trained weights pass messages over them, the ranker's features count them, and "
                "new customers and articles are placed through their features (their ID embeddings are zeros).\n\n")
    return card.rstrip("\n") + "\n" + line + "\n"

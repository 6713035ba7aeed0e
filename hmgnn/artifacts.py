"""The on-disk contract between steps: folder and file names, manifests, fingerprints and atomic writes.

Each step writes one folder under the workdir with fixed file names and a manifest.json; the next step needs
only that folder. A folder is built under a temporary name and renamed into place, so it is complete or absent.
"""

from __future__ import annotations

import datetime as dt
import errno
import fcntl
import hashlib
import json
import os
import re
import resource
import shutil
import sys
import time
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Iterator, Sequence

from hmgnn import __version__
from hmgnn.errors import HmgnnError, InputError, Interrupted, MissingArtifactError

if TYPE_CHECKING:
    import numpy as np
    import polars as pl

    from hmgnn.interactions import Interactions

# Folders under the workdir, one per step.
RAW = "raw"
TABLES = "tables"
GRAPH = "graph"
SPLIT = "split"
MODEL = "model"
REFERENCE = "reference"  # the reference recipe's model folder (`hmgnn train --recipe reference`)
EVALUATE = "evaluate"

MANIFEST = "manifest.json"

# raw/: the Kaggle file names.
TRANSACTIONS_CSV = "transactions_train.csv"
CUSTOMERS_CSV = "customers.csv"
ARTICLES_CSV = "articles.csv"

# tables/: typed parquet; the id maps live in customers/articles (index column first).
TRANSACTIONS_PARQUET = "transactions.parquet"
CUSTOMERS_PARQUET = "customers.parquet"
ARTICLES_PARQUET = "articles.parquet"

# graph/
GRAPH_PT = "graph.pt"
FEATURE_NAMES = "feature_names.json"

# split/
HISTORY_PARQUET = "history.parquet"
VALIDATION_PARQUET = "validation.parquet"
TEST_PARQUET = "test.parquet"
VALIDATION_PAIRS_PARQUET = "validation_pairs.parquet"
TEST_PAIRS_PARQUET = "test_pairs.parquet"
BINARY_KINDS = ("positive", "uniform")
"""The pair kinds the binary metrics use: bought pairs and 1:1 uniform negatives (the reference project's)."""
CUSTOMERS_KEPT_PARQUET = "customers_kept.parquet"

# model/ (reference/ alike): model.pt and the training record, plus what makes the folder self-contained: it
# loads and recommends without the workdir (see hmgnn/portable.py)
MODEL_PT = "model.pt"
MODEL_CARD = "README.md"  # what the model is, what it learned from, how to load it; `hmgnn update` adds to it
TRAIN_LOG = "train_log.csv"
FEATURES_PT = "features.pt"
PORTABLE_FILES = (FEATURES_PT, TRANSACTIONS_PARQUET, CUSTOMERS_PARQUET, ARTICLES_PARQUET)
"""The node features, the purchases, and the id maps with the article columns shown, copied from graph/ and tables/
into the model folder by `hmgnn train` (the parquet files hold a subset of tables/' columns, same rows)."""

# evaluate/
METRICS_JSON = "metrics.json"
REPORT_MD = "report.md"

# Which command makes each folder, for error messages.
PRODUCER = {
    RAW: "hmgnn synth (or copy the Kaggle files there)",
    TABLES: "hmgnn ingest",
    GRAPH: "hmgnn build-graph",
    SPLIT: "hmgnn sample",
    MODEL: "hmgnn train",
    REFERENCE: "hmgnn train --recipe reference",
    EVALUATE: "hmgnn evaluate",
}

_BLOCK = 8 << 20


_FINGERPRINTS: dict[tuple[Any, ...], str] = {}


def fingerprint(path: Path) -> str:
    """A content fingerprint: blake2b (128 bits) of every byte of the file, read in 8 MiB blocks.

    Every byte, so that an edit anywhere (one price rewritten in place, same length) makes the file's steps due
    again; docs/CONTRACT.md gives what this costs on the full Kaggle CSVs. Within one step (see
    `forget_fingerprints`) a file with the same device, inode, size and modification time is read once: the lineage
    checks of recommend, serve and evaluate meet graph.pt up to three times.
    """
    st = os.stat(path)
    key = (os.path.realpath(path), st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns)
    if key in _FINGERPRINTS:
        return _FINGERPRINTS[key]
    h = hashlib.blake2b(digest_size=16)
    buffer = bytearray(_BLOCK)
    view = memoryview(buffer)
    with Path(path).open("rb", buffering=0) as f:
        while n := f.readinto(buffer):
            h.update(view[:n])
    _FINGERPRINTS[key] = "blake2b:" + h.hexdigest()
    return _FINGERPRINTS[key]


_LEGACY_SAMPLED = "blake2b-sampled:"
"""The prefix of fingerprints hmgnn wrote before hashing every byte: files over 64 MiB were hashed by their size and
16 spread 1 MiB chunks."""


def _legacy_sampled_fingerprint(path: Path) -> str:
    size = Path(path).stat().st_size
    h = hashlib.blake2b(digest_size=16)
    h.update(str(size).encode())
    chunk, chunks = 1 << 20, 16
    with Path(path).open("rb") as f:
        for i in range(chunks):
            f.seek((size - chunk) * i // (chunks - 1))
            h.update(f.read(chunk))
    return _LEGACY_SAMPLED + h.hexdigest()


def same_fingerprint(path: Path, recorded: Any) -> bool:
    """Whether the file still has the fingerprint a manifest or checkpoint recorded. A record in the sampled form of
    earlier versions is compared in that form, so an artifact written before stays readable (a step whose inputs
    were recorded so runs once more: `skip_if_current` compares the input records as they are)."""
    if isinstance(recorded, str) and recorded.startswith(_LEGACY_SAMPLED):
        return _legacy_sampled_fingerprint(path) == recorded
    return fingerprint(path) == recorded


def forget_fingerprints() -> None:
    """Read every file again from here on: each command (the CLI), each step (`skip_if_current`) and each load of a
    served model start with this (a reload of `hmgnn serve` sees a file edited in place since the last one)."""
    _FINGERPRINTS.clear()


def describe_inputs(paths: list[Path]) -> list[dict[str, Any]]:
    """Size and fingerprint of each input file (folders are expanded to their files, manifests excluded)."""
    files: list[Path] = []
    for p in paths:
        if p.is_dir():
            files.extend(sorted(q for q in p.rglob("*") if q.is_file() and q.name != MANIFEST))
        elif p.exists():
            files.append(p)
    return [{"path": str(f), "bytes": f.stat().st_size, "fingerprint": fingerprint(f)} for f in files]


def load_torch(path: Path, kind: str, allow: Sequence[type] = (), map_location: Any = "cpu") -> Any:
    """`torch.load` that runs no code: tensors and plain data (str, int, float, bool, None, lists, dicts) only,
    plus the classes in `allow`; shared model files are what people pass around, so unpickling never calls
    anything else.

    A file holding anything more (a pickled callable, or an object of an older hmgnn's format) or a damaged one
    is refused with one line naming the file and the command that rewrites it (`kind`: the folder, see PRODUCER).
    """
    import pickle

    import torch

    rerun = PRODUCER.get(kind, kind)
    if not Path(path).is_file():
        raise MissingArtifactError(f"{path} does not exist; run `{rerun}` first")
    if _version_tuple(torch.__version__) < SAFE_TORCH:
        raise HmgnnError(f"torch {torch.__version__} is older than {'.'.join(map(str, SAFE_TORCH))}, whose "
                         f"weights_only=True a crafted file can bypass (CVE-2025-32434), so {path} was not read; "
                         f"upgrade torch (pip install 'torch>={'.'.join(map(str, SAFE_TORCH))}')")
    try:
        with torch.serialization.safe_globals(list(allow)):
            return torch.load(path, weights_only=True, map_location=map_location)
    except pickle.UnpicklingError as exc:
        if "weights only" not in str(exc).lower():
            raise InputError(f"{path} is damaged ({_first_line(exc)}); run `{rerun}` again (with --force)") from None
        raise InputError(f"{path} holds more than tensors and plain data (code, or an older hmgnn's format), so it "
                         f"was not loaded; run `{rerun}` again (with --force) to rewrite it") from None
    except (RuntimeError, EOFError, ValueError, KeyError, OSError) as exc:
        raise InputError(f"{path} is not a readable torch file ({_first_line(exc) or type(exc).__name__}); it is "
                         f"damaged or truncated: run `{rerun}` again (with --force)") from None


SAFE_TORCH = (2, 6)
"""The oldest torch whose `torch.load(weights_only=True)` runs no code from a crafted file (pyproject.toml's
minimum too)."""


def _version_tuple(version: str) -> tuple[int, ...]:
    """(2, 6) of "2.6.0+cpu"."""
    return tuple(int(part) for part in re.findall(r"\d+", version.split("+")[0])[:2])


def save_torch(obj: Any, path: Path) -> None:
    """`torch.save` via a temporary name (removed on any failure, Ctrl-C included); a full disk is one line that
    names the disk and the bytes needed, not torch's "enforce fail at inline_container.cc"."""
    import torch

    tmp = atomic_path(path)
    try:
        torch.save(obj, tmp)
        os.replace(tmp, path)
    except BaseException as exc:
        tmp.unlink(missing_ok=True)
        if isinstance(exc, (OSError, RuntimeError)):
            needed = _tensor_bytes(obj)
            if is_disk_full(exc) or shutil.disk_usage(path.parent).free < needed:
                raise disk_full(path, needed) from None
        raise


def _tensor_bytes(obj: Any) -> int:
    """Bytes of the tensors inside `obj` (dicts, lists, PyG storages): about what torch.save writes."""
    import torch

    if isinstance(obj, torch.Tensor):
        return obj.numel() * obj.element_size()
    if isinstance(obj, dict):
        return sum(_tensor_bytes(v) for v in obj.values())
    if isinstance(obj, (list, tuple)):
        return sum(_tensor_bytes(v) for v in obj)
    stores = getattr(obj, "stores", None)
    return sum(_tensor_bytes(dict(st)) for st in stores) if stores is not None else 0


def mount_point(path: Path) -> Path:
    """The mount point (the disk) a path lives on."""
    path = Path(os.path.abspath(path))
    while not path.exists():
        path = path.parent
    while not os.path.ismount(path):
        path = path.parent
    return path


def disk_full(path: Path | None, needed: int = 0) -> HmgnnError:
    """The one-line error for a write that ran out of space: which disk, what is free, what was needed (`path`
    None: the file is unknown, the disk is the working folder's); or, where a file size limit (`ulimit -f`) is set
    and the disk has room beyond it, that limit."""
    disk = mount_point(Path(path) if path is not None else Path.cwd())
    try:
        free = shutil.disk_usage(disk).free
    except OSError:
        free = 0
    writing = f" while writing {final_path(Path(path))}" if path is not None else ""
    limit = resource.getrlimit(resource.RLIMIT_FSIZE)[0]
    if limit != resource.RLIM_INFINITY and free > max(limit, needed):
        return HmgnnError(f"file size limit reached{writing}: files may be at most {limit:,} bytes here (`ulimit -f`)"
                          f"{f', about {needed:,} needed' if needed else ''}; raise the limit (ulimit -f unlimited) "
                          "and run the step again")
    need = f", about {needed:,} needed" if needed else ""
    return HmgnnError(f"no space left on {disk}{writing}: {free:,} bytes free{need}; free some space or use a "
                      "--workdir on a larger disk")


def write_failed(path: Path, exc: BaseException) -> HmgnnError:
    """The one-line error for a failed write of `path` whose source is in memory (so the output is at fault): a full
    disk or a file size limit as `disk_full` says it, else the library's first line with the file named."""
    if is_disk_full(exc) or resource.getrlimit(resource.RLIMIT_FSIZE)[0] != resource.RLIM_INFINITY:
        return disk_full(path)
    return HmgnnError(f"could not write {final_path(Path(path))} ({_first_line(exc) or type(exc).__name__}); check "
                      "that its folder is writable and has room")


def final_path(path: Path) -> Path:
    """The path a file under construction will have: each `.<name>.tmp-PID` folder on the way read as `<name>`
    (what a user knows the output by, not the temporary folder it is built in)."""
    parts = [m["name"] if (m := _LEFTOVER.fullmatch(part)) and m["kind"] == "tmp" else part for part in path.parts]
    return Path(*parts)


def is_disk_full(exc: BaseException) -> bool:
    """Whether an error is a write that found no room (a full disk, a quota, a file size limit), however the library
    that wrote reported it (an OSError's errno, torch's stream writer, the text of Rust's os errors 27 and 28 in
    polars)."""
    text = str(exc)
    return (getattr(exc, "errno", None) in (errno.ENOSPC, errno.EDQUOT, errno.EFBIG)
            or any(words in text for words in ("file write failed", "No space left on device", "File too large",
                                               "PytorchStreamWriter", "unexpected pos")))


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0][:200] if text else ""


def read_manifest(folder: Path) -> dict[str, Any] | None:
    try:
        return json.loads((folder / MANIFEST).read_text())
    except (OSError, ValueError):
        return None


def _strip_paths(inputs: list[dict[str, Any]]) -> list[tuple[str, int, str]]:
    # A moved workdir still counts as unchanged: compare names, sizes and fingerprints.
    return [(Path(i["path"]).name, i["bytes"], i["fingerprint"]) for i in inputs]


def is_up_to_date(out: Path, step: str, step_config: dict[str, Any], inputs: list[Path]) -> bool:
    """True when `out` holds a finished `step` whose inputs and config match the current ones."""
    manifest = read_manifest(out)
    if manifest is None or manifest.get("step") != step or manifest.get("version") != __version__:
        return False
    if manifest.get("step_config") != json.loads(json.dumps(step_config)):
        return False
    if not outputs_present(out, manifest):
        return False
    return _strip_paths(manifest.get("inputs", [])) == _strip_paths(describe_inputs(inputs))


def outputs_present(out: Path, manifest: dict[str, Any]) -> bool:
    """True when every file the manifest lists as written is in `out` with its recorded size (a deleted or
    truncated output makes the step due again; a manifest from before outputs were listed does too)."""
    outputs = manifest.get("outputs")
    if not isinstance(outputs, list):
        return False
    for entry in outputs:
        try:
            if (out / entry["path"]).stat().st_size != entry["bytes"]:
                return False
        except (OSError, KeyError, TypeError):
            return False
    return True


def describe_outputs(folder: Path) -> list[dict[str, Any]]:
    """Name (relative to `folder`), size and fingerprint of each file a step wrote, its manifest excluded."""
    files = sorted(p for p in folder.rglob("*") if p.is_file() and p.name != MANIFEST)
    return [{"path": f.relative_to(folder).as_posix(), "bytes": f.stat().st_size, "fingerprint": fingerprint(f)}
            for f in files]


def require(folder: Path, files: list[str], kind: str) -> None:
    """Check that a step's input folder holds `files`; the error names the command that makes them."""
    if not folder.is_dir():
        raise MissingArtifactError(f"{folder} does not exist; run `{PRODUCER.get(kind, kind)}` first "
                                   "(or point --in at the folder)")
    missing = [f for f in files if not (folder / f).is_file()]
    if missing:
        raise MissingArtifactError(f"{folder} lacks {', '.join(missing)}; run `{PRODUCER.get(kind, kind)}` "
                                   "again (with --force)")


def check_lineage(folders: Sequence[Path]) -> None:
    """Refuse to read step folders that do not fit together: each file of a folder must be the one its step wrote
    (same size and fingerprint as its manifest lists), and each input its step recorded from a folder beside it
    (tables/ for graph/, graph/ for split/, ...) must be the file there now. Otherwise a re-run `hmgnn ingest` of
    other data of the same shape would silently map a model onto customers and articles it never saw.

    One InputError names the file and the step to run again. A folder whose manifest lists no outputs (made by
    hand, or by an older hmgnn) gets a cheaper check instead: each parquet file's footer must read.
    """
    for folder in map(Path, folders):
        manifest = read_manifest(folder) or {}
        producer = PRODUCER.get(folder.name, f"the step that wrote {folder}")
        if not manifest.get("outputs"):
            _check_parquet_footers(folder, producer)
        check_outputs(folder, manifest, producer)
        for entry in manifest.get("inputs") or []:
            recorded = Path(entry["path"])
            source = folder.parent / recorded.parent.name
            current = source / recorded.name
            if source.name not in CHAINED or source == folder or not current.is_file():
                continue
            if current.stat().st_size != entry["bytes"] or not same_fingerprint(current, entry["fingerprint"]):
                raise InputError(f"{folder} was made from another {source.name}/{recorded.name} than the one there "
                                 f"now ({source.name}/ was made again since); run `{producer} --force` (and the "
                                 "steps after it)")


def check_outputs(folder: Path, manifest: dict[str, Any], producer: str, fix: str | None = None) -> None:
    """Each file `manifest` lists as written must be in `folder` with its recorded size and fingerprint; one
    InputError names the first that is not, and ends with `fix` (default: run `producer` again)."""
    fix = fix or f"run `{producer}` again (with --force)"
    for entry in manifest.get("outputs") or []:
        path = folder / entry["path"]
        if not path.is_file():
            raise InputError(f"{path} is missing (the manifest lists it); {fix}")
        size = path.stat().st_size
        if size != entry["bytes"] or not same_fingerprint(path, entry["fingerprint"]):
            raise InputError(f"{path} is not the file `{producer}` wrote ({entry['bytes']:,} bytes then, "
                             f"{size:,} now, or other content): it is damaged or was replaced; {fix}")


def _check_parquet_footers(folder: Path, producer: str) -> None:
    import polars as pl

    for path in sorted(folder.glob("*.parquet")) if folder.is_dir() else []:
        try:
            pl.read_parquet_schema(path)
        except Exception as exc:  # polars names no file: this error does
            raise InputError(f"{path} is not a readable parquet file ({_first_line(exc)}); run `{producer}` again "
                             "(with --force)") from None


CHAINED = (TABLES, GRAPH, SPLIT)
"""The folders whose files later steps read: `check_lineage` compares what each step recorded against them."""


class StepOutput:
    """Builds a step's output folder under a temporary name and renames it into place on success.

    Usage::

        with StepOutput(out, "ingest", cfg, step_config, inputs=[raw]) as so:
            write files into so.dir
            so.rows["transactions"] = n
    """

    def __init__(self, out: Path, step: str, config: dict[str, Any], step_config: dict[str, Any],
                 inputs: list[Path], started: float | None = None) -> None:
        self.out = Path(out)
        self.step = step
        self.config = config
        self.step_config = step_config
        self.inputs = inputs
        self.rows: dict[str, int] = {}
        self.extra: dict[str, Any] = {}
        self.dir = self.out.parent / f".{self.out.name}.tmp-{os.getpid()}"
        # the manifest's wall_time_s: from `started` (time.perf_counter() when the step began) when given
        self._start = started

    def __enter__(self) -> StepOutput:
        self.out.parent.mkdir(parents=True, exist_ok=True)
        claim(self.out, self.step)
        if self.dir.exists():
            shutil.rmtree(self.dir)
        self.dir.mkdir()
        if self._start is None:
            self._start = time.perf_counter()
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        try:
            if exc_type is not None:  # an error, Ctrl-C or SIGTERM: nothing half-written stays behind
                shutil.rmtree(self.dir, ignore_errors=True)
                return
            self._finish()
        except BaseException:
            shutil.rmtree(self.dir, ignore_errors=True)
            raise
        finally:
            release(self.out)

    def _finish(self) -> None:
        manifest = {
            "step": self.step,
            "version": __version__,
            "created_at": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
            "wall_time_s": round(time.perf_counter() - self._start, 3),
            "rows": self.rows,
            "inputs": describe_inputs(self.inputs),
            "outputs": describe_outputs(self.dir),
            "step_config": self.step_config,
            "config": self.config,
            **self.extra,
        }
        atomic_write_text(self.dir / MANIFEST, json.dumps(manifest, indent=2, default=str) + "\n")
        _COMPLETED.add(self.out.resolve())  # from here a signal is ignored (see hmgnn.cli): the renames go through
        replace_dir(self.dir, self.out)


_COMPLETED: set[Path] = set()
_HELD_SIGNALS: list[int] = []
_UNINTERRUPTED = [0]


@contextmanager
def uninterrupted() -> Iterator[None]:
    """A block that SIGINT and SIGTERM do not cut short: they stay pending (blocked in this thread; `quiet_threads`
    blocked them in polars' threads), or are held by the CLI's handler (`hold_signal`), until the block ends, then
    stop the step as usual. Around long polars calls, which watch for Ctrl-C themselves and stop halfway, leaving
    worker threads writing into a folder being removed and a panic on stderr."""
    import signal
    import threading

    if threading.current_thread() is not threading.main_thread():
        yield
        return
    before = signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT, signal.SIGTERM})
    _UNINTERRUPTED[0] += 1
    try:
        yield
    finally:
        _UNINTERRUPTED[0] -= 1
        signal.pthread_sigmask(signal.SIG_SETMASK, before)  # a pending signal is delivered here
    if not _UNINTERRUPTED[0] and _HELD_SIGNALS:
        signum = _HELD_SIGNALS[0]
        _HELD_SIGNALS.clear()
        raise KeyboardInterrupt if signum == signal.SIGINT else Interrupted(signum)


def hold_signal(signum: int) -> bool:
    """Keep `signum` for the end of the running `uninterrupted` block (True); False outside one."""
    if _UNINTERRUPTED[0]:
        _HELD_SIGNALS.append(signum)
        return True
    return False


def quiet_threads() -> None:
    """Start polars' worker threads with SIGINT and SIGTERM blocked (a thread keeps the mask it starts with), so that
    only the main thread receives them: polars then never sees a Ctrl-C inside an `uninterrupted` block."""
    import signal
    import threading

    if threading.current_thread() is not threading.main_thread():
        return
    before = signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT, signal.SIGTERM})
    try:
        import polars as pl

        pl.LazyFrame({"x": [1, 2]}).select(pl.col("x").sum()).collect()  # the thread pool
        pl.LazyFrame({"x": [1, 2]}).select(pl.col("x").sum()).collect(engine="streaming")  # the streaming executor
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, before)


def completed_outputs() -> set[Path]:
    """The step folders this command has moved into place, complete (the CLI clears it when a command starts): once
    there is one, a signal has nothing left to stop."""
    return _COMPLETED


def replace_dir(src: Path, dst: Path) -> None:
    """Move a finished folder into place, replacing any previous one (never leaves `dst` half-written)."""
    old = dst.parent / f".{dst.name}.old-{os.getpid()}"
    if dst.exists():
        os.replace(dst, old)
    os.replace(src, dst)
    if old.exists():
        shutil.rmtree(old, ignore_errors=True)


def atomic_write(path: Path, write: Callable[[Path], None]) -> None:
    """`write(tmp)` to a temporary sibling, then rename it to `path`; the temporary is removed on any failure. A
    missing folder is named as such (not the temporary file the write would have failed on)."""
    path = Path(path)
    if not path.parent.is_dir():
        what = "is not a folder" if path.parent.exists() else "does not exist"
        raise InputError(f"cannot write {path}: {path.parent} {what}; create it first or choose another path")
    tmp = atomic_path(path)
    try:
        write(tmp)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def atomic_write_text(path: Path, text: str) -> None:
    atomic_write(path, lambda tmp: tmp.write_text(text, encoding="utf-8"))


def atomic_path(path: Path) -> Path:
    """A temporary sibling of `path` to write to before `os.replace(tmp, path)`."""
    return path.parent / f".{path.name}.tmp-{os.getpid()}"


ARTICLE_ID_DIGITS = 10
"""Kaggle's article ids are 10 digits with leading zeros ("0108775015"); hmgnn stores them as integers."""


def article_label(article_id: int) -> str:
    """An article id as Kaggle writes it: 10 digits, leading zeros kept."""
    return f"{article_id:0{ARTICLE_ID_DIGITS}d}"


def article_labels(column: Any) -> Any:
    """The same for a polars expression or Series of integer ids."""
    import polars as pl

    return column.cast(pl.String).str.zfill(ARTICLE_ID_DIGITS)


def step_dir(workdir: str | Path, kind: str) -> Path:
    """The default folder of a step inside the workdir."""
    return Path(workdir) / kind


def is_model_folder(path: str | Path) -> bool:
    """True for a model folder given in place of a workdir (a copied model/: model.pt at its top, or the manifest
    `hmgnn train` writes, which a workdir never holds): it is then the only folder read (and one that lost its
    model.pt is refused there, see `portable.check_folder`). Asked by `locate` alone: everything else reads the
    `Location` it returns (tests/test_artifacts.py holds it to that)."""
    path = Path(path)
    return (path / MODEL_PT).is_file() or (read_manifest(path) or {}).get("step") == "train"


@dataclass(frozen=True)
class Location:
    """What a path given as the workdir (`-w`, `--model-dir`, `hmgnn.load`) is, from `locate`: a workdir, or a
    model folder standing in for one, and where each thing is read there."""

    path: Path
    model_folder: bool
    """A model folder (a copied model/) given in place of a workdir: then it is the only folder read."""

    @property
    def tables(self) -> Path:
        """Where the id maps and purchases are read: <workdir>/tables, or a model folder itself (its copies)."""
        return self.path if self.model_folder else step_dir(self.path, TABLES)

    @property
    def model(self) -> Path:
        """The default model's folder (the answers' store too): <workdir>/model, or a model folder itself."""
        return self.folder(MODEL)

    def folder(self, kind: str) -> Path:
        """A trained model's folder (`MODEL`, `REFERENCE`): <workdir>/<kind>, or a model folder itself."""
        return self.path if self.model_folder else step_dir(self.path, kind)

    @property
    def trained(self) -> bool:
        """Whether a trained model is there: a model folder, or a workdir whose model/ holds a model.pt (see
        `has_checkpoint`: a manifest that lists a missing model.pt is an error)."""
        return self.model_folder or has_checkpoint(self.model)


def locate(path: str | Path) -> Location:
    """The one answer to "what is this path": a workdir or a model folder (`is_model_folder`, asked here only),
    with the folders the rest reads from it."""
    return Location(Path(path), is_model_folder(path))


def has_checkpoint(folder: Path) -> bool:
    """Whether a model folder (<workdir>/model, <workdir>/reference) holds a trained model: True with its model.pt,
    False where no model was trained (no model.pt, no manifest). A manifest that lists model.pt without the file
    is an error, never "not trained": a deleted checkpoint must not turn into a silent fallback to a baseline."""
    folder = Path(folder)
    if (folder / MODEL_PT).is_file():
        return True
    manifest = read_manifest(folder)
    if manifest is None:
        return False
    listed = any(isinstance(e, dict) and e.get("path") == MODEL_PT for e in manifest.get("outputs") or [])
    if listed or manifest.get("step") == "train":
        raise MissingArtifactError(f"{folder / MODEL_PT} is missing ({folder / MANIFEST} lists it); run "
                                   f"`{PRODUCER.get(folder.name, 'hmgnn train')} --force` (or copy the whole model "
                                   "folder again)")
    return False


def skip_if_current(out: Path, step: str, step_config: dict[str, Any], inputs: list[Path], force: bool) -> bool:
    """True (and says so) when `out` is already up to date and --force was not given.

    Otherwise the step is claimed for this process first (see `claim`): the lock holds until its StepOutput
    finishes or the process ends.
    """
    claim(out, step)
    forget_fingerprints()  # a step reads its inputs afresh, even in a process that ran others before it
    if not force and is_up_to_date(out, step, step_config, inputs):
        from hmgnn.console import info

        release(out)
        info(f"[yellow]{step}[/yellow]: {out} is up to date with its inputs and config; skipped (--force redoes it)")
        SKIPPED.add(Path(out).resolve())
        return True
    SKIPPED.discard(Path(out).resolve())
    return False


SKIPPED: set[Path] = set()
"""Output folders this process found up to date (so the CLI says "skipped" only, not also "wrote")."""


def was_skipped(out: Path) -> bool:
    return Path(out).resolve() in SKIPPED


# ---- one writer per output folder ----------------------------------------------------------------------------
_HELD: dict[Path, int] = {}  # output folder -> the open lock file this process holds for it
_LEFTOVER = re.compile(r"\.(?P<name>.+)\.(?P<kind>tmp|old)-(?P<pid>\d+)")


def lock_path(out: Path) -> Path:
    return out.parent / f".{out.name}.lock"


def claim(out: Path, step: str) -> None:
    """Make this process the one writer of `out`, then sweep what dead writers left beside it.

    The lock is an `fcntl.flock` on `.<name>.lock` next to `out`, so it dies with its process (kill -9 too); a
    second writer is refused at once with who holds it. Claiming again from the same process is a no-op, and
    under torchrun only rank 0 writes, so only rank 0 claims.
    """
    out = Path(out)
    if out.resolve() in _HELD or int(os.environ.get("RANK", "0") or 0) != 0:
        return
    out.parent.mkdir(parents=True, exist_ok=True)
    path = lock_path(out)
    while True:
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 4096, 0).decode("utf-8", "replace").strip() or "another process"
            os.close(fd)
            raise HmgnnError(f"{out} is being written by {holder}; wait for it to finish (or stop it) and run "
                             "this step again") from None
        try:
            same = os.fstat(fd).st_ino == os.stat(path).st_ino
        except FileNotFoundError:
            same = False
        if same:  # else the holder removed the file between our open and our lock: take the new one
            break
        os.close(fd)
    started = dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")
    command = " ".join(["hmgnn", *sys.argv[1:]]) if sys.argv[1:] else step
    os.ftruncate(fd, 0)
    os.pwrite(fd, f"pid {os.getpid()} (`{command}`, since {started})\n".encode(), 0)
    _HELD[out.resolve()] = fd
    sweep_leftovers(out)


def release(out: Path) -> None:
    """Give up the claim on `out` (the lock file goes too, so a finished step leaves only its folder)."""
    fd = _HELD.pop(Path(out).resolve(), None)
    if fd is None:
        return
    try:
        lock_path(Path(out)).unlink(missing_ok=True)  # still locked: a newcomer re-checks the inode (see claim)
    finally:
        os.close(fd)


def release_all() -> None:
    """Give up every claim this process holds (the CLI, when a command ends, however it ends). A claim still held
    means its step never finished, so what this process built beside the output (`.<name>.tmp-PID`) goes too: a
    signal handled as a StepOutput began to clean up would otherwise leave it."""
    for out in list(_HELD):
        own = out.parent / f".{out.name}.tmp-{os.getpid()}"
        if own.is_dir() and not own.is_symlink():
            shutil.rmtree(own, ignore_errors=True)
        release(out)


def _alive(pid: int) -> bool:
    if pid == os.getpid():
        return False  # ours, from an earlier failed attempt in this process: no write of ours is under way yet
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def sweep_leftovers(out: Path) -> None:
    """Remove the temporary files and folders that writers of `out` killed mid-step left behind (`.<name>.tmp-PID`,
    and those inside `.<name>.partial`, the resumable training state); a `.<name>.old-PID` whose replacement never
    arrived is moved back into place. Only files of processes that are gone are touched."""
    out = Path(out)
    places = [(out.parent, out.name), (out.parent / f".{out.name}.partial", None)]
    for folder, name in places:
        if not folder.is_dir():
            continue
        for path in folder.iterdir():
            m = _LEFTOVER.fullmatch(path.name)
            if m is None or (name is not None and m["name"] != name) or _alive(int(m["pid"])):
                continue
            if m["kind"] == "old" and not out.exists():
                os.replace(path, out)  # killed between moving the old folder aside and the new one in
            elif path.is_dir() and not path.is_symlink():
                shutil.rmtree(path, ignore_errors=True)
            else:
                path.unlink(missing_ok=True)


@dataclass
class TablesSummary:
    """What every model's fit needs from tables/ besides the purchases: the number of customers and articles (the
    id maps' sizes) and each customer's age (-1 where unknown)."""

    n_customers: int
    n_articles: int
    ages: np.ndarray

    @classmethod
    def read(cls, tables: Path) -> TablesSummary:
        import numpy as np
        import polars as pl

        customers = pl.read_parquet(tables / CUSTOMERS_PARQUET, columns=["customer_index", "age"])
        n_articles = pl.scan_parquet(tables / ARTICLES_PARQUET).select(pl.len()).collect().item()
        ages = np.full(customers.height, -1, np.int16)
        ages[customers["customer_index"].to_numpy()] = customers["age"].fill_null(-1).to_numpy()
        return cls(customers.height, int(n_articles), ages)

    def interactions(self, frame: pl.DataFrame) -> Interactions:
        from hmgnn.interactions import Interactions

        return Interactions.from_frame(frame, self.n_customers, self.n_articles, self.ages)

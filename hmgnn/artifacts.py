"""The on-disk contract between steps: folder and file names, manifests, fingerprints and atomic writes.

Each step writes one folder under the workdir with fixed file names and a manifest.json; the next step needs
only that folder. A folder is built under a temporary name and renamed into place, so it is complete or absent.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import os
import shutil
import time
from pathlib import Path
from typing import Any

from hmgnn import __version__
from hmgnn.errors import MissingArtifactError

# Folders under the workdir, one per step.
RAW = "raw"
TABLES = "tables"
GRAPH = "graph"
SPLIT = "split"
MODEL = "model"
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

# model/
MODEL_PT = "model.pt"
TRAIN_LOG = "train_log.csv"

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
    EVALUATE: "hmgnn evaluate",
}

_FULL_HASH_LIMIT = 64 << 20
_SAMPLE_CHUNKS = 16
_CHUNK = 1 << 20


def fingerprint(path: Path) -> str:
    """A content fingerprint: blake2b of the whole file up to 64 MiB, else of its size and 16 spread 1 MiB chunks.

    The sampled form keeps a 3.4 GB CSV's fingerprint under 0.1 s while still changing with any edit that
    changes the size or touches a sampled chunk.
    """
    size = path.stat().st_size
    h = hashlib.blake2b(digest_size=16)
    with path.open("rb") as f:
        if size <= _FULL_HASH_LIMIT:
            for block in iter(lambda: f.read(_CHUNK), b""):
                h.update(block)
            return "blake2b:" + h.hexdigest()
        h.update(str(size).encode())
        for i in range(_SAMPLE_CHUNKS):
            f.seek((size - _CHUNK) * i // (_SAMPLE_CHUNKS - 1))
            h.update(f.read(_CHUNK))
    return "blake2b-sampled:" + h.hexdigest()


def describe_inputs(paths: list[Path]) -> list[dict[str, Any]]:
    """Size and fingerprint of each input file (folders are expanded to their files, manifests excluded)."""
    files: list[Path] = []
    for p in paths:
        if p.is_dir():
            files.extend(sorted(q for q in p.rglob("*") if q.is_file() and q.name != MANIFEST))
        elif p.exists():
            files.append(p)
    return [{"path": str(f), "bytes": f.stat().st_size, "fingerprint": fingerprint(f)} for f in files]


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
    return _strip_paths(manifest.get("inputs", [])) == _strip_paths(describe_inputs(inputs))


def require(folder: Path, files: list[str], kind: str) -> None:
    """Check that a step's input folder holds `files`; the error names the command that makes them."""
    if not folder.is_dir():
        raise MissingArtifactError(f"{folder} does not exist; run `{PRODUCER.get(kind, kind)}` first "
                                   "(or point --in at the folder)")
    missing = [f for f in files if not (folder / f).is_file()]
    if missing:
        raise MissingArtifactError(f"{folder} lacks {', '.join(missing)}; run `{PRODUCER.get(kind, kind)}` "
                                   "again (with --force)")


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
        if self.dir.exists():
            shutil.rmtree(self.dir)
        self.dir.mkdir()
        if self._start is None:
            self._start = time.perf_counter()
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is not None:
            shutil.rmtree(self.dir, ignore_errors=True)
            return
        manifest = {
            "step": self.step,
            "version": __version__,
            "created_at": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
            "wall_time_s": round(time.perf_counter() - self._start, 3),
            "rows": self.rows,
            "inputs": describe_inputs(self.inputs),
            "step_config": self.step_config,
            "config": self.config,
            **self.extra,
        }
        atomic_write_text(self.dir / MANIFEST, json.dumps(manifest, indent=2, default=str) + "\n")
        replace_dir(self.dir, self.out)


def replace_dir(src: Path, dst: Path) -> None:
    """Move a finished folder into place, replacing any previous one (never leaves `dst` half-written)."""
    old = dst.parent / f".{dst.name}.old-{os.getpid()}"
    if dst.exists():
        os.replace(dst, old)
    os.replace(src, dst)
    if old.exists():
        shutil.rmtree(old, ignore_errors=True)


def atomic_write_text(path: Path, text: str) -> None:
    tmp = path.parent / f".{path.name}.tmp-{os.getpid()}"
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, path)


def atomic_path(path: Path) -> Path:
    """A temporary sibling of `path` to write to before `os.replace(tmp, path)`."""
    return path.parent / f".{path.name}.tmp-{os.getpid()}"


def step_dir(workdir: str | Path, kind: str) -> Path:
    """The default folder of a step inside the workdir."""
    return Path(workdir) / kind


def skip_if_current(out: Path, step: str, step_config: dict[str, Any], inputs: list[Path], force: bool) -> bool:
    """True (and says so) when `out` is already up to date and --force was not given."""
    if not force and is_up_to_date(out, step, step_config, inputs):
        from hmgnn.console import info

        info(f"[yellow]{step}[/yellow]: {out} is up to date with its inputs and config; skipped (--force redoes it)")
        return True
    return False

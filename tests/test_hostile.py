"""Hostile and careless use, case by case: files that would run code, damaged and mismatched artifacts, interrupted,
killed and concurrent runs, numbers out of range, a full disk, cross-site reloads.

Each case checks what the issue asks of it: a one-line error that names the file or key, a non-zero exit, the
previous good artifacts intact and no temporary files left behind; a payload's marker file never appears.
"""

from __future__ import annotations

import fcntl
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import polars as pl
import pytest
import torch

from hmgnn import artifacts as A
from hmgnn import graph, serve, train
from hmgnn.cli import main
from hmgnn.config import load_config
from hmgnn.errors import ConfigError, InputError

from tables_fixture import FAST_TRAIN as FAST, make_tables

LEFTOVER = re.compile(r"\..+\.(tmp|old)-\d+|\..+\.lock")


class _Payload:
    """Unpickling this creates `marker`: what a model file that runs code would do (here harmlessly)."""

    def __init__(self, marker: Path) -> None:
        self.marker = str(marker)

    def __reduce__(self):
        return (open, (self.marker, "w"))


@pytest.fixture(scope="module")
def trained(split_workdir) -> Path:
    wd = split_workdir
    _ingest_manifest(wd)
    train.run(load_config(None, FAST, workdir=wd))
    return wd


def _ingest_manifest(wd: Path) -> None:
    """The manifest `hmgnn ingest` would have written beside the generated tables (what it wrote, and its size)."""
    manifest = {"step": "ingest", "inputs": [], "outputs": A.describe_outputs(wd / "tables")}
    (wd / "tables" / A.MANIFEST).write_text(json.dumps(manifest))


@pytest.fixture
def wd(trained, tmp_path) -> Path:
    """A private copy of the trained workdir (tables, graph, split, model), for one case to spoil."""
    return Path(shutil.copytree(trained, tmp_path / "wd"))


@pytest.fixture
def marker(tmp_path) -> Path:
    path = tmp_path / "MARKER"
    yield path
    assert not path.exists(), "unpickling ran code: the marker file appeared"


def hmgnn(capsys, *args: str) -> tuple[int, str]:
    """Run the real CLI in-process: (exit code, stderr)."""
    capsys.readouterr()
    try:
        main([*map(str, args)])
        code = 0
    except SystemExit as done:
        code = done.code or 0
    return code, capsys.readouterr().err


def one_line_error(err: str, *names: str) -> str:
    """The last stderr line: an `error:` line naming each of `names`."""
    line = err.strip().splitlines()[-1]
    assert line.startswith("error:"), err
    for name in names:
        assert name in line, (name, line)
    return line


def leftovers(wd: Path) -> list[str]:
    return sorted(str(p.relative_to(wd)) for p in wd.rglob("*") if LEFTOVER.fullmatch(p.name))


def forge_manifest(folder: Path) -> None:
    """Record the folder's current files as its outputs, as someone sharing a doctored folder would."""
    manifest = json.loads((folder / A.MANIFEST).read_text())
    manifest["outputs"] = A.describe_outputs(folder)
    (folder / A.MANIFEST).write_text(json.dumps(manifest))


def customer(wd: Path) -> str:
    buyers = pl.read_parquet(wd / "tables" / A.TRANSACTIONS_PARQUET)["customer_index"]
    return pl.read_parquet(wd / "tables" / A.CUSTOMERS_PARQUET)["customer_id"][int(buyers[0])]


def recommend_gnn(wd: Path) -> list[str]:
    return ["recommend", "-w", wd, "--model", "gnn", "--customer-id", customer(wd)]


def dead_pid() -> int:
    proc = subprocess.Popen(["true"])
    proc.wait()
    return proc.pid


# ---- 1. files that would run code -------------------------------------------------------------------------------
MALICIOUS = {
    # case: (file to replace, folder whose manifest is forged, command)
    "model.pt-recommend": ("model/model.pt", "model", lambda wd: recommend_gnn(wd)),
    "model.pt-evaluate": ("model/model.pt", "model", lambda wd: ["evaluate", "-w", wd, "--set",
                                                                 "evaluate.models=['popular']"]),
    "model.pt-serve": ("model/model.pt", "model", lambda wd: ["serve", "-w", wd, "--model", "gnn"]),
    "graph.pt-train": ("graph/graph.pt", "graph", lambda wd: ["train", "-w", wd, "--force", *_fast()]),
    "state.pt-train": ("model/../.model.partial/state.pt", None, lambda wd: ["train", "-w", wd, *_fast()]),
}


def _fast() -> list[str]:
    return [arg for item in FAST for arg in ("--set", item)]


@pytest.mark.parametrize("case", list(MALICIOUS))
def test_a_file_that_would_run_code_is_refused(case, wd, marker, capsys):
    relative, forged, command = MALICIOUS[case]
    target = (wd / relative).resolve()
    if case.startswith("state"):
        shutil.rmtree(wd / "model")  # not up to date: train looks for a state to resume
        target.parent.mkdir()
    torch.save({"state_dict": {}, "key": _Payload(marker)}, target)
    if forged:  # the manifest agrees with the file: only the loader stands in the way
        forge_manifest(wd / forged)
    if case.startswith("graph"):  # sample splits tables/' purchases, never loading graph.pt; train loads it
        assert hmgnn(capsys, "sample", "-w", wd, "--force")[0] == 0
    code, err = hmgnn(capsys, *command(wd))
    assert code == 1
    line = one_line_error(err, target.name, "hmgnn train" if "model" in relative else "hmgnn build-graph")
    assert "plain data" in line
    assert leftovers(wd) == []


@pytest.mark.parametrize("name", ["model/model.pt", "graph/graph.pt"])
def test_a_replaced_file_is_refused_before_it_is_read(name, wd, marker, capsys):
    torch.save({"key": _Payload(marker)}, wd / name)
    code, err = hmgnn(capsys, *recommend_gnn(wd))
    assert code == 1
    one_line_error(err, name.split("/")[1], "is not the file", "--force")


def test_the_payload_does_run_code_when_unpickled_unsafely(tmp_path):
    # the cases above are meaningful only if this file would run code under weights_only=False
    marker = tmp_path / "MARKER"
    torch.save({"key": _Payload(marker)}, tmp_path / "bad.pt")
    torch.load(tmp_path / "bad.pt", weights_only=False)
    assert marker.exists()


@pytest.mark.filterwarnings("ignore:Using `httpx` with")
def test_serve_reload_refuses_a_file_that_would_run_code(wd, marker):
    from fastapi.testclient import TestClient

    cfg = load_config(None, ["serve.model='gnn'"], workdir=wd)
    holder = serve.ModelHolder(cfg)
    client = TestClient(serve.create_app(holder), base_url="http://127.0.0.1:8000", client=("127.0.0.1", 50000))
    torch.save({"state_dict": {}, "key": _Payload(marker)}, wd / "model" / "model.pt")
    forge_manifest(wd / "model")
    r = client.post("/admin/reload")
    assert r.status_code == 409 and "model.pt" in r.json()["detail"] and "plain data" in r.json()["detail"]
    with pytest.raises(InputError, match="plain data"):  # what SIGHUP's reload runs
        holder.reload()


def test_the_graph_loader_refuses_a_file_that_would_run_code(tmp_path, marker):
    torch.save({"key": _Payload(marker)}, tmp_path / "graph.pt")
    with pytest.raises(InputError, match="graph.pt .*plain data.*hmgnn build-graph"):
        graph.load_graph(tmp_path / "graph.pt")


def test_model_and_graph_files_hold_only_plain_data(trained):
    checkpoint = torch.load(trained / "model" / "model.pt", weights_only=True)
    assert {"state_dict", "model_args", "ranker", "config"} <= set(checkpoint)
    with torch.serialization.safe_globals(list(graph.HETERO_DATA_CLASSES)):
        data = torch.load(trained / "graph" / "graph.pt", weights_only=True)
    assert data["article"].num_nodes > 0


def test_an_old_format_checkpoint_gets_a_rerun_message(wd, capsys):
    checkpoint = torch.load(wd / "model" / "model.pt", weights_only=True)
    checkpoint["article_meta"] = np.arange(3)  # an object, not plain data: as an older format might hold
    torch.save(checkpoint, wd / "model" / "model.pt")
    forge_manifest(wd / "model")
    code, err = hmgnn(capsys, *recommend_gnn(wd))
    assert code == 1
    one_line_error(err, "model.pt", "hmgnn train")


# ---- 2. damaged files ---------------------------------------------------------------------------------------------
def _spoil(path: Path, how: str) -> None:
    data = path.read_bytes()
    if how == "empty":
        path.write_bytes(b"")
    elif how == "truncated":
        path.write_bytes(data[: len(data) // 2])
    else:
        path.write_bytes(np.random.default_rng(0).bytes(len(data)))


@pytest.mark.parametrize("how", ["empty", "truncated", "random"])
@pytest.mark.parametrize("name, forged, command", [
    ("model/model.pt", True, recommend_gnn),  # past the manifest: the loader names the file
    ("graph/graph.pt", True, recommend_gnn),
    ("tables/articles.parquet", False, recommend_gnn),  # the manifest's record names it first
    ("split/history.parquet", False, lambda wd: ["train", "-w", wd, "--force"]),
    ("tables/transactions.parquet", False, lambda wd: ["recommend", "-w", wd, "--all", "--out", wd / "r.csv"]),
    ("tables/customers.parquet", False, lambda wd: ["build-graph", "-w", wd, "--force"]),
    ("graph/feature_names.json", False, lambda wd: ["train", "-w", wd, "--force"]),
    ("split/test.parquet", False, lambda wd: ["evaluate", "-w", wd, "--force"]),
])
def test_a_damaged_file_is_named(name, forged, command, how, wd, capsys):
    _spoil(wd / name, how)
    if forged:
        forge_manifest((wd / name).parent)
    code, err = hmgnn(capsys, *command(wd))
    assert code == 1
    one_line_error(err, Path(name).name, "--force")
    assert leftovers(wd) == []


@pytest.mark.parametrize("how", ["empty", "truncated", "random"])
def test_a_damaged_table_without_a_manifest_is_named(how, wd, capsys):
    (wd / "tables" / A.MANIFEST).unlink()  # made by hand: nothing records what the files were
    _spoil(wd / "tables" / A.ARTICLES_PARQUET, how)
    code, err = hmgnn(capsys, "recommend", "-w", wd, "--model", "popular", "--customer-id", customer(wd))
    assert code == 1
    one_line_error(err, "articles.parquet", "not a readable parquet file", "hmgnn ingest")


# ---- 3. exits that tell the truth -------------------------------------------------------------------------------
@pytest.mark.parametrize("args", [["recommend", "--nope"], ["recommend", "--k", "abc"], ["train", "--set"],
                                  ["no-such-command"], ["train", "--set", "foo"], ["init", "nosuch"],
                                  ["recommend", "--workdir", "a", "--model-dir", "b", "--customer-id", "x"],
                                  ["serve", "--model", "nosuch"], ["export", "--model", "nosuch", "--embeddings", "e"]])
def test_usage_errors_exit_2(args, capsys):
    code, _ = hmgnn(capsys, *args)
    assert code == 2


def test_version_exits_0(capsys):
    assert hmgnn(capsys, "--version")[0] == 0


def test_bare_command_is_help_and_exits_0(capsys):
    capsys.readouterr()
    try:
        main([])
        code = 0
    except SystemExit as done:
        code = done.code or 0
    captured = capsys.readouterr()
    assert code == 0 and "Usage" in captured.out and "recommend" in captured.out and "error" not in captured.err


def _graph_files(wd: Path) -> dict[str, int]:
    return {p.name: p.stat().st_size for p in (wd / "graph").iterdir()}


@pytest.mark.parametrize("where", ["features", "writing"])
@pytest.mark.parametrize("signal_name", ["SIGINT", "SIGTERM"])
def test_interrupt_exits_128_plus_signal_and_cleans_up(where, signal_name, wd, monkeypatch, capsys):
    before = _graph_files(wd)
    signum = getattr(signal, signal_name)

    def interrupted(*args, **kwargs):
        os.kill(os.getpid(), signum)  # Ctrl-C or `kill`: Python acts on it at the next bytecode
        time.sleep(5)
        raise AssertionError("the signal did not stop the step")

    monkeypatch.setattr(graph, "customer_features" if where == "features" else "save_torch", interrupted)
    # Ctrl-C as a terminal delivers it: a shell starts background jobs with SIGINT ignored, which Python keeps
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        code, err = hmgnn(capsys, "build-graph", "-w", wd, "--force")
    finally:
        signal.signal(signal.SIGINT, previous)
    assert code == 128 + signum and err.strip().splitlines()[-1] == "interrupted"
    assert _graph_files(wd) == before and leftovers(wd) == []


@pytest.mark.parametrize("step, folder", [("build-graph", "graph"), ("sample", "split"), ("evaluate", "evaluate")])
def test_sigterm_as_a_step_finishes_leaves_the_previous_folder(step, folder, wd, monkeypatch, capsys):
    before = sorted((p.name, p.stat().st_size) for p in (wd / folder).iterdir()) if (wd / folder).exists() else None

    def terminated(*args, **kwargs):  # every step lists its outputs last, just before the rename
        os.kill(os.getpid(), signal.SIGTERM)
        time.sleep(5)

    monkeypatch.setattr(A, "describe_outputs", terminated)
    code, err = hmgnn(capsys, step, "-w", wd, "--force", "--set", "evaluate.models=['popular']")
    assert code == 143 and err.strip().endswith("interrupted")
    after = sorted((p.name, p.stat().st_size) for p in (wd / folder).iterdir()) if (wd / folder).exists() else None
    assert after == before and leftovers(wd) == []


def test_sigterm_in_training_keeps_only_the_resumable_state(wd, monkeypatch, capsys):
    shutil.rmtree(wd / "model")
    epoch = train.Trainer.train_epoch

    def terminated_in_epoch_two(self, *args, **kwargs):
        if self.epoch == 1:
            os.kill(os.getpid(), signal.SIGTERM)
            time.sleep(5)
        return epoch(self, *args, **kwargs)

    monkeypatch.setattr(train.Trainer, "train_epoch", terminated_in_epoch_two)
    code, err = hmgnn(capsys, "train", "-w", wd, *_fast())
    assert code == 143 and err.strip().endswith("interrupted")
    # the state after epoch one stays, on purpose: the next run resumes from it (tests/test_train.py); nothing
    # else is left
    assert leftovers(wd) == [] and not (wd / "model").exists()
    assert torch.load(wd / ".model.partial" / "state.pt", weights_only=True)["epoch"] == 1


def test_eof_is_an_error_not_an_abort(wd, monkeypatch, capsys):
    def eof(*args, **kwargs):
        raise EOFError

    monkeypatch.setattr(graph, "customer_features", eof)
    code, err = hmgnn(capsys, "build-graph", "-w", wd, "--force")
    assert code == 1
    assert "Abort" not in one_line_error(err, "EOFError")


_BLOCKED_STEP = textwrap.dedent("""
    import sys, time
    from hmgnn import graph
    from hmgnn.cli import main
    def slow_save(obj, path):
        path.write_bytes(b"partial")
        time.sleep(60)
    graph.save_torch = slow_save
    main(["build-graph", "-w", sys.argv[1], "--force"])
""")


@pytest.mark.parametrize("signal_name", ["SIGTERM", "SIGKILL"])
def test_killed_step_then_rerun_leaves_nothing_behind(signal_name, wd, capsys):
    before = _graph_files(wd)
    proc = subprocess.Popen([sys.executable, "-c", _BLOCKED_STEP, str(wd)], stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 60
    while not list(wd.glob(".graph.tmp-*/graph.pt")):
        assert proc.poll() is None and time.monotonic() < deadline, proc.stderr.read() if proc.poll() else "no start"
        time.sleep(0.05)
    proc.send_signal(getattr(signal, signal_name))
    _, err = proc.communicate(timeout=60)
    assert _graph_files(wd) == before
    if signal_name == "SIGTERM":
        assert proc.returncode == 143 and err.strip().splitlines()[-1] == "interrupted"
        assert leftovers(wd) == []
    else:
        assert proc.returncode == -9 and leftovers(wd)  # kill -9 cannot clean up ...
    code, _ = hmgnn(capsys, "build-graph", "-w", wd, "--force")
    assert code == 0 and leftovers(wd) == []  # ... the next run sweeps it


def test_two_writers_at_once_never_collide(wd):
    command = [sys.executable, "-m", "hmgnn.cli", "build-graph", "-w", str(wd), "--force"]
    procs = [subprocess.Popen(command, stderr=subprocess.PIPE, text=True) for _ in range(2)]
    results = [(p.wait(120), p.stderr.read()) for p in procs]
    assert 0 in [code for code, _ in results], results
    for code, err in results:  # the loser, if they overlapped, is told who holds the folder
        assert code == 0 or (code == 1 and "is being written by" in " ".join(err.split())), err
    assert leftovers(wd) == [] and graph.load_graph(wd / "graph" / A.GRAPH_PT)["customer"].x.shape[0] > 0


def test_a_killed_submission_is_swept_by_the_next(wd, capsys):
    stale = wd / f".recs.csv.tmp-{dead_pid()}"
    stale.write_text("customer_id,prediction\n")
    code, _ = hmgnn(capsys, "recommend", "-w", wd, "--model", "popular", "--all", "--out", wd / "recs.csv")
    assert code == 0 and not stale.exists()
    recs = pl.read_csv(wd / "recs.csv")
    assert recs.columns == ["customer_id", "prediction"] and recs.height == pl.read_parquet(
        wd / "tables" / A.CUSTOMERS_PARQUET).height


def test_a_second_writer_is_told_who_holds_the_step(wd, capsys):
    lock = A.lock_path(wd / "graph")
    fd = os.open(lock, os.O_RDWR | os.O_CREAT)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        os.write(fd, b"pid 4242 (`hmgnn build-graph`, since 2026-01-01T00:00:00+00:00)\n")
        code, err = hmgnn(capsys, "build-graph", "-w", wd, "--force")
    finally:
        os.close(fd)
    assert code == 1
    one_line_error(err, "graph", "pid 4242", "hmgnn build-graph")


@pytest.mark.parametrize("damage", ["deleted", "truncated"])
def test_up_to_date_needs_every_output_file(damage, wd, capsys):
    code, err = hmgnn(capsys, "build-graph", "-w", wd, "--set", "graph.text_dim=4")
    assert code == 0 and "up to date" in " ".join(err.split())  # rich wraps lines
    names = wd / "graph" / A.FEATURE_NAMES
    if damage == "deleted":
        names.unlink()
    else:
        names.write_text(names.read_text()[:10])
    code, err = hmgnn(capsys, "build-graph", "-w", wd, "--set", "graph.text_dim=4")
    assert code == 0 and "up to date" not in " ".join(err.split()) and json.loads(names.read_text())["article"]


def test_stale_leftovers_of_dead_processes_are_swept(wd, capsys):
    dead, alive = dead_pid(), os.getppid()
    (wd / f".graph.tmp-{dead}").mkdir()
    (wd / f".graph.tmp-{dead}" / "graph.pt").write_bytes(b"x" * 100)
    (wd / f".graph.tmp-{alive}").mkdir()  # another live process's: not ours to remove
    (wd / ".model.partial").mkdir()
    (wd / ".model.partial" / f".state.pt.tmp-{dead}").write_bytes(b"x")
    assert hmgnn(capsys, "train", "-w", wd, *_fast())[0] == 0  # up to date: it claims, sweeps and skips
    assert hmgnn(capsys, "build-graph", "-w", wd, "--force")[0] == 0
    assert leftovers(wd) == [f".graph.tmp-{alive}"]


def test_a_folder_moved_aside_by_a_killed_writer_comes_back(wd):
    old = wd / f".graph.old-{dead_pid()}"
    os.replace(wd / "graph", old)  # killed between the two renames of replace_dir
    A.sweep_leftovers(wd / "graph")
    assert not old.exists() and graph.load_graph(wd / "graph" / A.GRAPH_PT)["article"].x.shape[0] > 0


# ---- 4. numbers ---------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("override, key", [
    ("train.lr=inf", "train.lr"), ("train.lr=nan", "train.lr"), ("train.lr=-inf", "train.lr"),
    ("train.weight_decay=nan", "train.weight_decay"), ("train.dropout=nan", "train.dropout"),
    ("train.disjoint_ratio=nan", "train.disjoint_ratio"), ("train.max_minutes=-1", "train.max_minutes"),
    ("train.max_minutes=inf", "train.max_minutes"), ("train.recency_half_life=-0.5", "train.recency_half_life"),
    ("seed=-1", "seed"), ("seed=99999999999", "seed"), ("synth.taste_strength=nan", "synth.taste_strength"),
    ("ranker.learning_rate=inf", "ranker.learning_rate"), ("recommend.k=0", "recommend.k"),
    ("recommend.k=1000000000", "recommend.k"), ("sample.customers=-5", "sample.customers"),
    ("serve.port=0", "serve.port"), ("evaluate.k=nan", "evaluate.k"),
    ("ranker.gnn_candidates=1000000000000", "ranker.gnn_candidates"),
])
def test_numbers_out_of_range_name_the_key(override, key):
    with pytest.raises(ConfigError, match=re.escape(key)):
        load_config(None, [override])


def test_k_beyond_the_articles_is_refused(wd, capsys):
    code, err = hmgnn(capsys, "recommend", "-w", wd, "--model", "popular", "--k", "500", "--all", "--out",
                      wd / "recs.csv")
    assert code == 2 and not (wd / "recs.csv").exists()  # a usage error: the command asked for too much
    one_line_error(err, "recommend.k", "articles.parquet")


def test_k_for_everybody_has_a_cap(wd, capsys):
    code, err = hmgnn(capsys, "recommend", "-w", wd, "--k", "5000", "--all", "--out", wd / "recs.csv")
    assert code == 2 and not (wd / "recs.csv").exists()
    one_line_error(err, "recommend.k", "--all")


def test_a_non_finite_learning_rate_is_refused_through_the_cli(wd, capsys):
    before = (wd / "model" / "model.pt").read_bytes()
    code, err = hmgnn(capsys, "train", "-w", wd, "--force", "--set", "train.lr=inf")
    assert code == 2 and (wd / "model" / "model.pt").read_bytes() == before
    one_line_error(err, "train.lr", "finite")


# ---- 5. artifacts that do not fit together ----------------------------------------------------------------------
def _reingest_other_data(wd: Path) -> None:
    """What `hmgnn ingest --force` of other data of the same size leaves: other tables with a fresh manifest."""
    make_tables(wd / "tables", n_customers=400, n_articles=150, n_rows=6000, seed=11)
    _ingest_manifest(wd)


@pytest.mark.parametrize("command", [
    recommend_gnn, lambda wd: ["evaluate", "-w", wd], lambda wd: ["sample", "-w", wd, "--force"],
    lambda wd: ["train", "-w", wd, "--force"],
], ids=["recommend", "evaluate", "sample", "train"])
def test_other_tables_under_an_old_graph_are_refused(command, wd, capsys):
    _reingest_other_data(wd)
    code, err = hmgnn(capsys, *command(wd))
    assert code == 1
    one_line_error(err, "tables/", "hmgnn build-graph --force")


@pytest.mark.parametrize("command, rerun", [
    (recommend_gnn, "hmgnn train --force"), (lambda wd: ["train", "-w", wd, "--force"], "hmgnn sample --force"),
], ids=["model", "split"])
def test_a_new_graph_under_an_old_split_or_model_is_refused(command, rerun, wd, capsys):
    assert hmgnn(capsys, "build-graph", "-w", wd, "--force", "--set", "graph.text_dim=2")[0] == 0
    code, err = hmgnn(capsys, *command(wd))
    assert code == 1
    one_line_error(err, "another graph/", rerun)


# ---- 5b. a model folder copied without its workdir: incomplete, damaged or mixed copies ----------------------------
def _forge_record(folder: Path, name: str) -> None:
    """Make model.pt's record of `name` agree with the file there now, as a doctored copy would."""
    checkpoint = torch.load(folder / A.MODEL_PT, weights_only=True)
    checkpoint["files"][name] = {"bytes": (folder / name).stat().st_size, "fingerprint": A.fingerprint(folder / name)}
    torch.save(checkpoint, folder / A.MODEL_PT)


def _other_features(folder: Path, marker: Path) -> None:
    torch.save({"customer": {}, "article": {}}, folder / A.FEATURES_PT)


def _features_that_run_code(folder: Path, marker: Path) -> None:
    torch.save({"customer": _Payload(marker)}, folder / A.FEATURES_PT)
    _forge_record(folder, A.FEATURES_PT)


def _another_models_features(folder: Path, marker: Path) -> None:
    from hmgnn.portable import pack_rows

    torch.save({"customer": pack_rows(torch.zeros(3, 2)), "article": pack_rows(torch.zeros(2, 2))},
               folder / A.FEATURES_PT)
    _forge_record(folder, A.FEATURES_PT)


def _from_an_older_hmgnn(folder: Path, marker: Path) -> None:
    for name in A.PORTABLE_FILES:
        (folder / name).unlink()


@pytest.mark.parametrize("spoil, named, words", [
    (lambda f, m: (f / A.FEATURES_PT).unlink(), A.FEATURES_PT, "lacks"),
    (lambda f, m: (f / A.TRANSACTIONS_PARQUET).unlink(), A.TRANSACTIONS_PARQUET, "lacks"),
    (lambda f, m: (f / A.MANIFEST).unlink(), A.MANIFEST, "lacks"),
    (_from_an_older_hmgnn, A.FEATURES_PT, "older hmgnn"),
    (lambda f, m: _spoil(f / A.CUSTOMERS_PARQUET, "random"), A.CUSTOMERS_PARQUET, "is not the file"),
    (lambda f, m: _spoil(f / A.FEATURES_PT, "truncated"), A.FEATURES_PT, "is not the file"),
    ((lambda f, m: (_other_features(f, m), forge_manifest(f))), A.FEATURES_PT, "not the file written with"),
    ((lambda f, m: (_features_that_run_code(f, m), forge_manifest(f))), A.FEATURES_PT, "plain data"),
    ((lambda f, m: (_another_models_features(f, m), forge_manifest(f))), A.FEATURES_PT, "the model expects"),
], ids=["no-features", "no-purchases", "no-manifest", "older", "damaged-customers", "truncated-features",
        "other-features", "features-run-code", "other-shape"])
def test_a_copied_model_folder_with_a_bad_file_names_it(spoil, named, words, trained, tmp_path, marker, capsys):
    folder = Path(shutil.copytree(trained / "model", tmp_path / "copy"))
    spoil(folder, marker)
    code, err = hmgnn(capsys, "recommend", "--model-dir", folder, "--customer-id", customer(trained))
    assert code == 1
    line = one_line_error(err, named, words)
    if words != "plain data":
        assert "copy the whole model/" in line or "hmgnn train --force" in line


def test_a_model_folder_answers_only_for_its_recipe(trained, tmp_path, capsys):
    folder = Path(shutil.copytree(trained / "model", tmp_path / "copy"))
    code, err = hmgnn(capsys, "recommend", "--model-dir", folder, "--model", "reference", "--customer-id",
                      customer(trained))
    assert code == 1
    one_line_error(err, "model.pt", "--model gnn")
    code, err = hmgnn(capsys, "recommend", "--model-dir", tmp_path, "--customer-id", customer(trained))
    assert code == 1
    one_line_error(err, "--model-dir", "no model.pt")


# ---- 6. a full disk -----------------------------------------------------------------------------------------------
def test_a_full_disk_names_the_disk_and_the_bytes(wd, monkeypatch, capsys):
    before = _graph_files(wd)

    def full(obj, path, *args, **kwargs):
        Path(path).write_bytes(b"half")
        raise RuntimeError("[enforce fail at inline_container.cc:664] . PytorchStreamWriter failed writing file "
                           "data/0: file write failed")

    monkeypatch.setattr(torch, "save", full)
    code, err = hmgnn(capsys, "build-graph", "-w", wd, "--force")
    assert code == 1
    line = one_line_error(err, "no space left on", "graph.pt", "bytes free", "needed")
    assert "inline_container" not in line
    assert _graph_files(wd) == before and leftovers(wd) == []


@pytest.mark.parametrize("raised", ["oserror", "polars"])
def test_a_full_disk_in_any_write_is_one_line(raised, wd, monkeypatch, capsys):
    import errno

    def full(self, path, *args, **kwargs):
        if raised == "oserror":
            raise OSError(errno.ENOSPC, "No space left on device", str(path))
        raise pl.exceptions.ComputeError("io error: No space left on device (os error 28)")

    monkeypatch.setattr(pl.DataFrame, "write_parquet", full)
    code, err = hmgnn(capsys, "sample", "-w", wd, "--force")
    assert code == 1
    one_line_error(err, "no space left on", "bytes free", *(["history.parquet"] if raised == "oserror" else []))
    assert leftovers(wd) == [] and pl.read_parquet(wd / "split" / A.HISTORY_PARQUET).height > 0  # the old split stays


# ---- 7. serve: reload only from this machine, never from another site ---------------------------------------------
@pytest.mark.filterwarnings("ignore:Using `httpx` with")
@pytest.mark.parametrize("host, origin, status", [
    ("127.0.0.1:8000", None, 200), ("localhost:8000", "http://localhost:8000", 200), ("[::1]:8000", None, 200),
    ("evil.example:8000", None, 403), ("127.0.0.1.evil.example", None, 403),
    ("127.0.0.1:8000", "http://evil.example", 403), ("127.0.0.1:8000", "null", 403),
    ("localhost:8000", "https://localhost.evil.example", 403),
    ("127.0.0.1:1@evil.example", None, 403), ("localhost:8000@evil.example:80", None, 403),
    ("evil.example@127.0.0.1:8000", None, 403), ("127.0.0.1:8000/x", None, 403), ("127.0.0.1:99999", None, 403),
    ("127.0.0.1:80 ", None, 200), ("LOCALHOST", None, 200), ("[::1]", None, 200), ("127.0.0.1:", None, 403),
    ("127.0.0.1:8000", "http://127.0.0.1:1@evil.example", 403), ("127.0.0.1:8000", "http://localhost:8000", 200),
])
def test_reload_refuses_other_hosts_and_origins(host, origin, status):
    from fastapi.testclient import TestClient

    served = SimpleNamespace(name="popular", model_fingerprint=None, data_fingerprint="blake2b:0")
    holder = serve.ModelHolder(None, served=served, loader=lambda cfg: served)
    client = TestClient(serve.create_app(holder), client=("127.0.0.1", 50000))
    headers = {"host": host} | ({"origin": origin} if origin else {})
    r = client.post("/admin/reload", headers=headers)
    assert r.status_code == status, r.text


@pytest.mark.filterwarnings("ignore:Using `httpx` with")
@pytest.mark.parametrize("authorization, status", [(None, 403), ("Bearer wrong", 403), ("Bearer s3cret", 200)])
def test_reload_beyond_loopback_needs_the_start_up_token(authorization, status):
    from fastapi.testclient import TestClient

    served = SimpleNamespace(name="popular", model_fingerprint=None, data_fingerprint="blake2b:0")
    holder = serve.ModelHolder(None, served=served, loader=lambda cfg: served)
    client = TestClient(serve.create_app(holder, reload_token="s3cret"), base_url="http://127.0.0.1:8000",
                        client=("127.0.0.1", 50000))
    r = client.post("/admin/reload", headers={"authorization": authorization} if authorization else {})
    assert r.status_code == status, r.text


# ---- 8. forged plain data: every part of model.pt checked before native code reads it -----------------------------
def _retree(text: str) -> str:
    """`tree_sizes` recomputed from the trees' extents, as a forger who edits a tree keeps LightGBM's index right."""
    starts = [m.start() for m in re.finditer(r"^Tree=\d+$", text, re.M)] + [text.index("end of trees")]
    sizes = " ".join(str(b - a) for a, b in zip(starts, starts[1:]))
    return re.sub(r"^tree_sizes=.*$", f"tree_sizes={sizes}", text, count=1, flags=re.M)


def _first(key: str, value: str):
    """A forgery of a LightGBM text: the first value of the first tree's `key` replaced, tree_sizes kept right."""
    return lambda t: _retree(re.sub(rf"^{key}=\S+", f"{key}={value}", t, count=1, flags=re.M))


RANKER_FORGERIES = {
    # case: (checkpoint entry, how its model_text is forged, words of the error)
    "cut-in-half": ("ranker", lambda t: t[: len(t) // 2], "incomplete"),
    "ranker-only-cut-in-half": ("ranker_only", lambda t: t[: len(t) // 2], "incomplete"),
    "feature-99999": ("ranker", _first("split_feature", "99999"), "splits on a feature outside"),
    "child-out-of-range": ("ranker", _first("left_child", "999"), "do not form a tree"),
    "nan-threshold": ("ranker", _first("threshold", "nan"), "threshold that is not a number"),
    "infinite-leaf": ("ranker", _first("leaf_value", "inf"), "leaf_value that is not finite"),
    "tree-sizes-lie": ("ranker", lambda t: re.sub(r"^tree_sizes=(\d+)", lambda m: f"tree_sizes={int(m[1]) + 99}",
                                                  t, count=1, flags=re.M), "tree_sizes"),
    "tree-missing": ("ranker", lambda t: re.sub(r"^Tree=1\n.*?\n\n\n", "", t, count=1, flags=re.M | re.S),
                     "Tree=1 belongs"),
    "no-end-of-trees": ("ranker", lambda t: t.replace("end of trees", "end of forest"), "end of trees"),
    "bad-parameters": ("ranker", lambda t: t.replace("[seed: ", "seed: ", 1), "unexpected line"),
}
CHECKPOINT_FORGERIES = {
    "state-dict-shape": (lambda ck: ck["state_dict"].__setitem__("embedding.customer.weight", torch.zeros(3, 16)),
                         "has shape [3, 16]"),
    "state-dict-nan": (lambda ck: ck["state_dict"]["convs.0.customer.lin_l.weight"].fill_(float("nan")),
                       "not finite"),
    "customers-beyond-int32": (lambda ck: ck["model_args"].__setitem__("num_customers", 10**12), "num_customers"),
    "candidates-beyond-sane": (lambda ck: ck["candidate_sizes"].__setitem__("gnn", 10**12), "candidate_sizes.gnn"),
    "unknown-feature": (lambda ck: ck["ranker"].__setitem__("features", ["rm -rf", *ck["ranker"]["features"][1:]]),
                        "does not compute"),
    "article-codes": (lambda ck: ck["article_meta"]["product"].__setitem__(0, -1), "article_meta"),
    "head-nan": (lambda ck: ck.__setitem__("retrieval_head", [0.0, float("nan"), 0.0, 0.0, 0.0]), "retrieval_head[1]"),
    "head-length": (lambda ck: ck.__setitem__("retrieval_head", [1.0, 2.0]), "retrieval_head"),
}

_RUN_EACH = textwrap.dedent("""
    import sys
    from hmgnn.cli import main
    for folder in sys.argv[2:]:
        print(f"@@ {folder}", file=sys.stderr, flush=True)
        try:
            main(["recommend", "--model-dir", folder, "--customer-id", sys.argv[1]])
            code = 0
        except SystemExit as done:
            code = done.code or 0
        print(f"@@ exit {code}", file=sys.stderr, flush=True)
""")


def test_an_infinite_threshold_is_lightgbms_own_and_passes(trained):
    # LightGBM writes threshold=inf for a split that sends every value one way and missing values the other: a
    # model it trained must never be refused as forged
    from hmgnn.ranking.checkpoint import check_ranker
    from hmgnn.ranking.ranker import Ranker

    checkpoint = torch.load(trained / "model" / A.MODEL_PT, weights_only=True)
    entry = dict(checkpoint["ranker"])
    entry["model_text"] = _first("threshold", "inf")(entry["model_text"])
    groups = [k.split(":", 1)[1] for k in checkpoint["article_meta"] if k.startswith("group:")]
    check_ranker(entry, groups, ValueError)  # no error
    x = np.full((3, len(entry["features"])), np.nan, np.float32)
    assert np.isfinite(Ranker.from_dict(entry).predict(x)).all()


def _forged_folder(trained: Path, folder: Path, forge) -> Path:
    shutil.copytree(trained / "model", folder)
    checkpoint = torch.load(folder / A.MODEL_PT, weights_only=True)
    forge(checkpoint)
    torch.save(checkpoint, folder / A.MODEL_PT)  # plain data only, and the manifest agrees: only the checks remain
    forge_manifest(folder)
    return folder


def test_forged_plain_data_in_a_model_folder_is_one_error_line(trained, tmp_path):
    def ranker_forgery(key, edit):
        return lambda ck: ck[key].__setitem__("model_text", edit(ck[key]["model_text"]))

    cases = {name: (ranker_forgery(key, edit), words) for name, (key, edit, words) in RANKER_FORGERIES.items()}
    cases |= CHECKPOINT_FORGERIES
    folders = {name: _forged_folder(trained, tmp_path / name, forge) for name, (forge, _) in cases.items()}
    # one child process for every case: before these checks, LightGBM's parser died by SIGSEGV or SIGABRT
    proc = subprocess.run([sys.executable, "-c", _RUN_EACH, customer(trained), *map(str, folders.values())],
                          capture_output=True, text=True, errors="replace", timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    found = re.findall(r"^@@ (\S+)\n(.*?)^@@ exit (\d+)$", proc.stderr, re.M | re.S)
    outputs = {Path(folder).name: (int(code), text) for folder, text, code in found}
    assert len(outputs) == len(cases), proc.stderr[-3000:]
    for name, (_, words) in cases.items():
        code, err = outputs[name]
        assert code == 1, (name, err)
        line = one_line_error(err, "model.pt", words)
        assert len(err.strip().splitlines()) == 1, err
        assert "hmgnn train --force" in line


_RELOAD_A_FORGERY = textwrap.dedent("""
    import shutil, sys
    from pathlib import Path
    import torch
    from fastapi.testclient import TestClient
    from hmgnn import serve
    from hmgnn.config import load_config
    from hmgnn.errors import InputError
    wd, forged, customer = Path(sys.argv[1]), Path(sys.argv[2]), sys.argv[3]
    holder = serve.ModelHolder(load_config(None, ["serve.model='gnn'"], workdir=wd))
    client = TestClient(serve.create_app(holder), base_url="http://127.0.0.1:8000", client=("127.0.0.1", 50000))
    before = client.get(f"/recommendations/{customer}").json()
    shutil.copy(forged / "model.pt", wd / "model" / "model.pt")
    shutil.copy(forged / "manifest.json", wd / "model" / "manifest.json")
    r = client.post("/admin/reload")
    print("reload", r.status_code, r.json()["detail"])
    try:
        holder.reload()  # what SIGHUP runs
    except InputError as exc:
        print("sighup refused", exc)
    print("same answers", client.get(f"/recommendations/{customer}").json() == before)
""")


@pytest.mark.filterwarnings("ignore:Using `httpx` with")
def test_serve_refuses_to_reload_forged_plain_data_and_keeps_answering(wd, tmp_path):
    forged = _forged_folder(wd, tmp_path / "forged", lambda ck: ck["ranker"].__setitem__(
        "model_text", ck["ranker"]["model_text"][: len(ck["ranker"]["model_text"]) // 2]))
    proc = subprocess.run([sys.executable, "-W", "ignore", "-c", _RELOAD_A_FORGERY, str(wd), str(forged),
                           customer(wd)], capture_output=True, text=True, errors="replace", timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    lines = proc.stdout.splitlines()
    assert lines[0].startswith("reload 409") and "model.pt" in lines[0] and "incomplete" in lines[0], lines
    assert lines[1].startswith("sighup refused") and "incomplete" in lines[1], lines
    assert lines[2] == "same answers True", lines


# ---- 9. a file the manifest lists, deleted: an error for every command, never a fallback -------------------------
@pytest.mark.parametrize("command", ["recommend", "recommend-model-dir", "serve", "serve-model-dir", "evaluate",
                                     "load", "load-model-dir"])
def test_a_deleted_model_pt_is_an_error_not_a_fallback(command, wd, monkeypatch, capsys):
    import uvicorn

    from hmgnn import api
    from hmgnn.errors import HmgnnError

    (wd / "model" / A.MODEL_PT).unlink()
    monkeypatch.setattr(uvicorn, "run", lambda *a, **k: pytest.fail("serve started without its model.pt"))
    where = ["--model-dir", wd / "model"] if command.endswith("model-dir") else ["-w", wd]
    if command.startswith("load"):
        with pytest.raises(HmgnnError, match="model.pt") as raised:
            api.load(where[1])
        assert "is missing" in str(raised.value) or "lacks model.pt" in str(raised.value)
        return
    args = {"recommend": ["recommend", *where, "--customer-id", customer(wd)], "serve": ["serve", *where],
            "evaluate": ["evaluate", *where, "--force"]}[command.removesuffix("-model-dir")]
    code, err = hmgnn(capsys, *args)
    assert code == 1 and "trending" not in err, err
    one_line_error(err, "model.pt", "hmgnn train")


# ---- 10. torch: the minimum whose weights_only cannot be bypassed --------------------------------------------------
def test_torch_older_than_2_6_reads_no_model_file(wd, monkeypatch, capsys):
    import tomllib

    requires = tomllib.loads((Path(__file__).parents[1] / "pyproject.toml").read_text())["project"]["dependencies"]
    assert "torch>=2.6" in [r.replace(" ", "") for r in requires]
    monkeypatch.setattr(torch, "__version__", "2.5.1+cu121")
    code, err = hmgnn(capsys, *recommend_gnn(wd))
    assert code == 0, err  # the answers stored at train are parquet rows: no model file is read for them
    (wd / "model" / "answers.json").unlink()
    code, err = hmgnn(capsys, *recommend_gnn(wd))
    assert code == 1
    one_line_error(err, "torch 2.5.1", "CVE-2025-32434", "model.pt")


# ---- 11. impossible values in the raw files: one line per kind, or --lenient leaves them out -----------------------
def _cid(i: int) -> str:
    return f"{i:064x}"


_RAW = {
    "customers.csv": "customer_id,FN,Active,club_member_status,fashion_news_frequency,age,postal_code\n"
                     + "".join(f"{_cid(i)},,,ACTIVE,NONE,{20 + i}.0,p{i}\n" for i in range(1, 7)),
    "articles.csv": "article_id,product_code,prod_name,product_type_no,detail_desc\n"
                    "108775015,108775,Strap top,253,\"Jersey top, narrow straps.\"\n"
                    "108775044,108775,Strap top,253,\n110065001,110065,OP T-shirt,306,Cotton.\n",
    "transactions_train.csv": "t_dat,customer_id,article_id,price,sales_channel_id\n"
                              + "".join(f"2018-09-{20 + i % 5},{_cid(1 + i % 6)},0{(108775015, 108775044, 110065001)[i % 3]},"
                                        f"0.0{i + 10},{1 + i % 2}\n" for i in range(12)),
}


def _raw(tmp_path: Path, edits: dict[str, tuple[int, str, str]]) -> Path:
    """The small raw set with `edits`: {file: (data row, column, new value)}; a value of None cuts the row short
    before that column."""
    raw = tmp_path / "raw"
    raw.mkdir()
    for name, text in _RAW.items():
        lines = text.splitlines()
        header = lines[0].split(",")
        for row, column, value in edits.get(name, []):
            fields = lines[row].split(",")
            if value is None:
                fields = fields[: header.index(column)]
            else:
                fields[header.index(column)] = value
            lines[row] = ",".join(fields)
        (raw / name).write_text("\n".join(lines) + "\n")
    return raw


IMPOSSIBLE = {
    # case: (edits, words of its one error line)
    "date-after-today": ({"transactions_train.csv": [(3, "t_dat", "2030-01-01")]},
                         ["transactions_train.csv", "column t_dat", "row 3", "'2030-01-01'", "after today"]),
    "date-in-1900": ({"transactions_train.csv": [(4, "t_dat", "1900-01-01")]},
                     ["column t_dat", "row 4", "'1900-01-01'", "more than 365 days from every other date"]),
    "negative-price": ({"transactions_train.csv": [(5, "price", "-0.5"), (6, "price", "-1")]},
                       ["column price", "row 5 (and 1 more rows)", "'-0.5'", "negative price"]),
    "malformed-customer-id": ({"transactions_train.csv": [(2, "customer_id", "not-a-hex-id")]},
                              ["column customer_id", "row 2", "'not-a-hex-id'", "64 lower-case hexadecimal"]),
    "malformed-id-in-customers": ({"customers.csv": [(1, "customer_id", "A" * 64)]},
                                  ["customers.csv", "column customer_id", "row 1", "64 lower-case hexadecimal"]),
    "row-cut-short": ({"transactions_train.csv": [(7, "sales_channel_id", None)]},
                      ["transactions_train.csv", "row 7", "4 fields where the header names 5"]),
    "customer-row-cut-short": ({"customers.csv": [(2, "postal_code", None)]},
                               ["customers.csv", "row 2", "6 fields where the header names 7"]),
    "age-99999": ({"customers.csv": [(2, "age", "99999")]}, ["customers.csv", "column age", "row 2", "'99999'",
                                                             "outside 0..120"]),
    "age-minus-5": ({"customers.csv": [(3, "age", "-5")]}, ["column age", "row 3", "'-5'", "outside 0..120"]),
}


@pytest.mark.parametrize("case", list(IMPOSSIBLE))
def test_an_impossible_value_is_one_line_naming_where(case, tmp_path, capsys):
    edits, words = IMPOSSIBLE[case]
    raw = _raw(tmp_path, edits)
    code, err = hmgnn(capsys, "ingest", "-w", tmp_path, "--raw", raw)
    assert code == 1 and "Traceback" not in err
    lines = [line for line in err.strip().splitlines() if line.startswith("error:")]
    assert len(lines) == 1, err
    line = one_line_error(err, *words)
    assert "--lenient" in line
    assert not (tmp_path / "tables").exists() and leftovers(tmp_path) == []


def test_several_kinds_of_impossible_values_are_a_line_each(tmp_path, capsys):
    edits = {name: [e for case in IMPOSSIBLE.values() for e in case[0].get(name, [])] for name in _RAW}
    edits["customers.csv"] = [e for e in edits["customers.csv"] if e[2] != "A" * 64]  # its rows still map
    raw = _raw(tmp_path, edits)
    code, err = hmgnn(capsys, "ingest", "-w", tmp_path, "--raw", raw)
    lines = err.strip().splitlines()
    errors = [line for line in lines if line.startswith("error:")]
    assert code == 1 and lines[-len(errors):] == errors and not (tmp_path / "tables").exists()
    kinds = ["after today", "365 days", "negative price", "hexadecimal", "4 fields", "6 fields", "outside 0..120"]
    assert [sum(kind in line for line in errors) for kind in kinds] == [1] * len(kinds), errors


def test_lenient_leaves_out_impossible_rows_and_counts_them(tmp_path, capsys):
    edits = {"transactions_train.csv": [(3, "t_dat", "2030-01-01"), (4, "t_dat", "1900-01-01"),
                                        (5, "price", "-0.5"), (6, "price", "-1"), (2, "customer_id", "x"),
                                        (7, "sales_channel_id", None)],
             "customers.csv": [(2, "age", "99999")]}
    raw = _raw(tmp_path, edits)
    code, err = hmgnn(capsys, "ingest", "-w", tmp_path, "--raw", raw, "--lenient")
    assert code == 0, err
    said = " ".join(err.split())
    for words in ("dated after today: 1", "cut off from the rest: 1", "negative price: 2", "malformed customer ids "
                  "in transactions_train.csv: 1", "rows cut short in transactions_train.csv: 1",
                  "ages outside 0..120 set to missing: 1"):
        assert words in said, said
    tables = tmp_path / "tables"
    tx = pl.read_parquet(tables / A.TRANSACTIONS_PARQUET)
    assert tx.height == 12 - 6 and tx["price"].min() >= 0 and str(tx["t_dat"].min()) >= "2018-09-20"
    customers = pl.read_parquet(tables / A.CUSTOMERS_PARQUET)
    assert customers.height == 6 and customers["age"].null_count() == 1  # the id "x" made no unknown customer
    assert json.loads((tables / A.MANIFEST).read_text())["left_out"]["transactions with a negative price"] == 2


@pytest.mark.parametrize("dates", [["1997-03-01", "1997-03-02"], ["2010-12-01", "2010-12-09"],
                                   ["2018-09-20", "2019-09-30"]], ids=["1997", "2010", "a-gap-of-a-year"])
def test_real_logs_of_any_year_are_not_typos(dates, tmp_path, capsys):
    edits = {"transactions_train.csv": [(row, "t_dat", dates[row % 2]) for row in range(1, 13)]}
    code, err = hmgnn(capsys, "ingest", "-w", tmp_path, "--raw", _raw(tmp_path, edits))
    assert code == 0, err


# ---- 12. messages that name what is actually wrong ------------------------------------------------------------------
@pytest.mark.parametrize("args, words", [
    (["init", "tiny", "--out", "no/such/x.toml"], ["no/such does not exist", "no/such/x.toml"]),
    (["synth", "-c", "."], ["is a folder, not a TOML file"]),
    (["synth", "-c", "/dev/zero"], ["/dev/zero is not a regular file"]),
    (["synth", "-c", "tiny", "--set", "synth.transactions=1000000000000"], ["synth.transactions", "10 times"]),
    (["synth", "-c", "tiny", "--set", "synth.customers=1000000000000"], ["synth.customers", "10 times"]),
], ids=["init-into-a-missing-folder", "config-is-a-folder", "config-is-a-device", "synth-too-many-rows",
        "synth-too-many-customers"])
def test_messages_name_what_is_wrong(args, words, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    code, err = hmgnn(capsys, *args, *(["-w", tmp_path] if args[0] == "synth" else []))
    assert code == (2 if "--set" in args else 1)  # a value the command line set is a usage error
    line = one_line_error(err, *words)
    assert ".tmp-" not in line and "does not exist" not in line.replace("no/such does not exist", "")
    assert not (tmp_path / "raw").exists() and list(tmp_path.iterdir()) == []


_WITH_A_FILE_SIZE_LIMIT = textwrap.dedent("""
    import resource, sys
    from hmgnn.cli import main
    resource.setrlimit(resource.RLIMIT_FSIZE, (int(sys.argv[1]), int(sys.argv[1])))  # `ulimit -f`
    main(sys.argv[2:])
""")


@pytest.mark.parametrize("step", ["ingest", "build-graph"])
def test_a_file_size_limit_names_the_output_not_the_input(step, wd, tmp_path):
    if step == "ingest":
        raw = _raw(tmp_path, {})
        text = (raw / "transactions_train.csv").read_text().splitlines()
        (raw / "transactions_train.csv").write_text("\n".join(text + text[1:] * 300) + "\n")  # tables over 4 KiB
        args, limit, named = ["ingest", "-w", str(tmp_path), "--raw", str(raw)], 4096, f"{tmp_path / 'tables'}"
    else:
        args, limit, named = ["build-graph", "-w", str(wd), "--force"], 60_000, f"{wd / 'graph' / 'graph.pt'}"
    before = _graph_files(wd)
    proc = subprocess.run([sys.executable, "-c", _WITH_A_FILE_SIZE_LIMIT, str(limit), *args], capture_output=True,
                          text=True, timeout=300)
    assert proc.returncode == 1, proc.stderr[-3000:]
    line = one_line_error(proc.stderr, "file size limit", f"{limit:,} bytes", named)
    assert "transactions_train.csv" not in line and "inline_container" not in line and ".tmp-" not in line
    assert leftovers(tmp_path) == [] and leftovers(wd) == [] and _graph_files(wd) == before


# ---- 13. interrupts at any moment: temporary folders removed, 130/143, no panic; after the output, exit 0 ---------
_SIGNAL_DURING_THE_SORT = textwrap.dedent("""
    import os, signal, sys, threading
    import polars as pl
    from hmgnn.cli import main
    signal.signal(signal.SIGINT, signal.default_int_handler)  # as in a terminal: a background job ignores Ctrl-C
    sink, signum = pl.LazyFrame.sink_parquet, getattr(signal, sys.argv[1])
    def signalled_sink(self, path, *args, **kwargs):
        if str(path).endswith("transactions.parquet"):  # the sort, as long as at full scale: a signal comes midway
            threading.Timer(0.2, os.kill, (os.getpid(), signum)).start()
            rows = pl.LazyFrame({"x": range(8_000_000)}).with_columns((pl.col("x") * 7919 % 1000003).alias("y"))
            try:
                sink(rows.sort("y"), path, *args, **kwargs)
            except BaseException:
                print("the sort stopped halfway", file=sys.stderr)
                raise
            print("the sort wrote its file", file=sys.stderr)
        return sink(self, path, *args, **kwargs)
    pl.LazyFrame.sink_parquet = signalled_sink
    sys.argv = ["hmgnn", *sys.argv[2:]]
    main()
""")


@pytest.mark.parametrize("signal_name", ["SIGINT", "SIGTERM"])
def test_a_signal_during_ingests_sort_removes_its_temporary_folder(signal_name, tmp_path):
    raw = _raw(tmp_path, {})  # out of date order: ingest sorts
    proc = subprocess.run([sys.executable, "-c", _SIGNAL_DURING_THE_SORT, signal_name, "ingest", "-w", str(tmp_path),
                           "--raw", str(raw)], capture_output=True, text=True, errors="replace", timeout=300)
    assert proc.returncode == 128 + getattr(signal, signal_name), proc.stderr[-3000:]
    assert proc.stderr.strip().splitlines()[-1] == "interrupted" and "panic" not in proc.stderr, proc.stderr[-3000:]
    assert "the sort wrote its file" in proc.stderr  # the signal waited for the write, then stopped the step
    assert leftovers(tmp_path) == [] and not (tmp_path / "tables").exists()


@pytest.mark.parametrize("signal_name", ["SIGINT", "SIGTERM"])
@pytest.mark.parametrize("step", ["ingest", "build-graph"])
def test_a_signal_once_the_output_is_complete_exits_0(step, signal_name, wd, tmp_path, monkeypatch, capsys):
    replace = A.replace_dir

    def then_signalled(src, dst):
        replace(src, dst)
        os.kill(os.getpid(), getattr(signal, signal_name))
        time.sleep(0.2)  # the handler runs here

    monkeypatch.setattr(A, "replace_dir", then_signalled)
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        args = (["ingest", "-w", tmp_path, "--raw", _raw(tmp_path, {})] if step == "ingest"
                else ["build-graph", "-w", wd, "--force"])
        code, err = hmgnn(capsys, *args)
    finally:
        signal.signal(signal.SIGINT, previous)
    folder = tmp_path / "tables" if step == "ingest" else wd / "graph"
    assert code == 0 and "interrupted" not in err and "wrote" in err, err
    assert (folder / A.MANIFEST).is_file() and leftovers(folder.parent) == []

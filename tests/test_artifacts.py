"""The artifact contract: atomic step folders, manifests, fingerprints and up-to-date checks."""

import json
import os

import pytest

from hmgnn import artifacts
from hmgnn.errors import MissingArtifactError


def _write(so, name="a.txt", text="hello"):
    (so.dir / name).write_text(text)


def test_step_output_writes_manifest_and_renames(tmp_path):
    src = tmp_path / "in.txt"
    src.write_text("input")
    out = tmp_path / "w" / "step"
    with artifacts.StepOutput(out, "demo", {"seed": 1}, {"seed": 1}, [src]) as so:
        _write(so)
        so.rows["things"] = 3
        assert not out.exists()  # nothing visible until the step finishes
    manifest = json.loads((out / artifacts.MANIFEST).read_text())
    assert (out / "a.txt").read_text() == "hello"
    assert manifest["step"] == "demo" and manifest["rows"] == {"things": 3}
    assert manifest["inputs"][0]["bytes"] == 5
    assert manifest["inputs"][0]["fingerprint"].startswith("blake2b:")
    assert {"version", "created_at", "wall_time_s", "config", "step_config"} <= set(manifest)
    assert [p.name for p in out.parent.iterdir()] == ["step"]  # no temporary leftovers


def test_failed_step_leaves_nothing(tmp_path):
    out = tmp_path / "step"
    with pytest.raises(RuntimeError):
        with artifacts.StepOutput(out, "demo", {}, {}, []) as so:
            _write(so)
            raise RuntimeError("killed")
    assert list(tmp_path.iterdir()) == []


def test_failed_rerun_keeps_the_previous_output(tmp_path):
    out = tmp_path / "step"
    with artifacts.StepOutput(out, "demo", {}, {}, []) as so:
        _write(so, text="first")
    with pytest.raises(RuntimeError):
        with artifacts.StepOutput(out, "demo", {}, {}, []) as so:
            _write(so, text="second")
            raise RuntimeError
    assert (out / "a.txt").read_text() == "first"


def test_up_to_date_follows_inputs_and_config(tmp_path):
    src = tmp_path / "in.txt"
    src.write_text("v1")
    out = tmp_path / "step"
    with artifacts.StepOutput(out, "demo", {}, {"seed": 1}, [src]) as so:
        _write(so)
    assert artifacts.is_up_to_date(out, "demo", {"seed": 1}, [src])
    assert not artifacts.is_up_to_date(out, "demo", {"seed": 2}, [src])
    assert not artifacts.is_up_to_date(out, "other", {"seed": 1}, [src])
    src.write_text("v2")
    assert not artifacts.is_up_to_date(out, "demo", {"seed": 1}, [src])
    assert artifacts.skip_if_current(out, "demo", {"seed": 1}, [src], force=False) is False


def test_fingerprint_sees_every_byte_of_a_large_file(tmp_path):
    # beyond 64 MiB the fingerprint once sampled 16 chunks: an edit between them (one price rewritten in place, the
    # size unchanged) left the file "up to date"
    path = tmp_path / "transactions_train.csv"
    with path.open("wb") as f:
        f.truncate(80 << 20)
    before = artifacts.fingerprint(path)
    with path.open("r+b") as f:
        f.seek(3 << 20)
        f.write(b"1")
    assert artifacts.fingerprint(path) != before and path.stat().st_size == 80 << 20


def test_require_names_the_producer(tmp_path):
    with pytest.raises(MissingArtifactError, match="hmgnn ingest"):
        artifacts.require(tmp_path / "tables", ["transactions.parquet"], artifacts.TABLES)
    (tmp_path / "tables").mkdir()
    with pytest.raises(MissingArtifactError, match="transactions.parquet"):
        artifacts.require(tmp_path / "tables", ["transactions.parquet"], artifacts.TABLES)


def test_manifest_wall_time_covers_the_whole_step(tmp_path):
    import time

    started = time.perf_counter() - 5.0  # the step's work began 5 s before its output folder was opened
    with artifacts.StepOutput(tmp_path / "out", "ingest", {}, {}, inputs=[], started=started):
        pass
    assert json.loads((tmp_path / "out" / artifacts.MANIFEST).read_text())["wall_time_s"] >= 5.0



def test_a_file_edited_in_place_with_its_old_mtime_is_seen_by_the_next_command(tmp_path):
    # fingerprints are kept within one command only: the next one reads every byte again
    path = tmp_path / "transactions_train.csv"
    path.write_bytes(b"t_dat,price\n2020-09-22,0.05\n")
    before, stat = artifacts.fingerprint(path), path.stat()
    path.write_bytes(b"t_dat,price\n2020-09-22,0.06\n")
    os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns))  # same size, same mtime: a careful forger
    artifacts.forget_fingerprints()  # what the CLI does as a command starts
    assert artifacts.fingerprint(path) != before


def test_a_fingerprint_recorded_in_the_earlier_sampled_form_still_matches(tmp_path):
    # artifacts written before every byte was hashed (files over 64 MiB: their size and 16 spread 1 MiB chunks)
    # stay readable: the record is compared in its own form
    import hashlib

    path = tmp_path / "graph.pt"
    path.write_bytes(bytes(range(256)) * (3 * 4096 + 7))  # ~3 MiB
    size = path.stat().st_size
    h = hashlib.blake2b(digest_size=16)
    h.update(str(size).encode())
    data = path.read_bytes()
    for i in range(16):
        start = (size - (1 << 20)) * i // 15
        h.update(data[start:start + (1 << 20)])
    recorded = "blake2b-sampled:" + h.hexdigest()
    assert artifacts.same_fingerprint(path, recorded)
    assert artifacts.same_fingerprint(path, artifacts.fingerprint(path)) and not artifacts.same_fingerprint(path, "blake2b:0")
    with path.open("r+b") as f:  # one byte inside the first sampled chunk
        f.seek(10)
        f.write(b"\xff")
    artifacts.forget_fingerprints()
    assert not artifacts.same_fingerprint(path, recorded)


def test_one_function_says_what_a_path_is(tmp_path):
    # a workdir, and a model folder in its place: `locate` tells them apart and says where each thing is read
    workdir = tmp_path / "work"
    (workdir / artifacts.MODEL).mkdir(parents=True)
    where = artifacts.locate(workdir)
    assert (where.path, where.model_folder, where.trained) == (workdir, False, False)
    assert (where.tables, where.model, where.folder(artifacts.REFERENCE)) == (
        workdir / artifacts.TABLES, workdir / artifacts.MODEL, workdir / artifacts.REFERENCE)
    (workdir / artifacts.MODEL / artifacts.MODEL_PT).write_bytes(b"")
    assert artifacts.locate(workdir).trained and not artifacts.locate(workdir).model_folder
    folder = artifacts.locate(str(workdir / artifacts.MODEL))
    assert folder.model_folder and folder.trained
    assert folder.tables == folder.model == folder.folder(artifacts.REFERENCE) == workdir / artifacts.MODEL


def test_only_locate_asks_whether_a_path_is_a_model_folder():
    # everything else reads the Location it returns: one call site of is_model_folder in the whole package
    import ast
    from pathlib import Path

    import hmgnn

    package = Path(hmgnn.__file__).parent
    calls = []
    for path in sorted(package.rglob("*.py")):
        tree = ast.parse(path.read_text(), filename=str(path))
        functions = [node for node in ast.walk(tree) if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef))]
        for node in ast.walk(tree):
            if isinstance(node, ast.Call):
                func = node.func
                name = func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", None)
                if name == "is_model_folder":
                    inside = [f.name for f in functions if f.lineno <= node.lineno <= f.end_lineno]
                    calls.append((str(path.relative_to(package)), inside[-1] if inside else None))
            elif isinstance(node, ast.Name) and node.id == "is_model_folder" and path.name != "artifacts.py":
                calls.append((str(path.relative_to(package)), "a reference"))
    assert calls == [("artifacts.py", "locate")]

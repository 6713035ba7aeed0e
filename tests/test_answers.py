"""The answers `hmgnn train` stores for `recommend --customer-id` (hmgnn/answers.py): the same as the model ranks
them, read without torch, and never read once the model or the tables changed."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import polars as pl
import pytest
from typer.testing import CliRunner

from hmgnn import answers
from hmgnn import artifacts as A
from hmgnn.cli import app
from hmgnn.config import load_config
from tables_fixture import FAST_TRAIN

UNKNOWN = "f" * 64


@pytest.fixture(scope="module")
def fitted(trained_workdir):
    """The default model fit as `recommend` fits it, and its name."""
    from hmgnn import recommend

    cfg = load_config(None, FAST_TRAIN, workdir=trained_workdir)
    name = recommend.model_name(cfg)
    model, _ = recommend.fit_model(cfg, name)
    return model, name


def _ids(workdir: Path) -> list[str]:
    return pl.read_parquet(A.locate(workdir).tables / A.CUSTOMERS_PARQUET)["customer_id"].sort().to_list()


def test_train_stores_every_customer_answer(trained_workdir):
    meta = json.loads((trained_workdir / A.MODEL / answers.STORE_JSON).read_text())
    assert meta["model"] == "gnn" and meta["asked"] == ["auto", "gnn"] and meta["k"] == 12
    assert meta["customers"] == len(_ids(trained_workdir))
    stored = pl.read_parquet(trained_workdir / A.MODEL / answers.STORE_PARQUET)
    assert stored["customer_id"].n_unique() == meta["customers"] + 1  # and the unknown id's answer
    assert stored["customer_id"].is_sorted()
    assert answers.current(trained_workdir) is not None


def test_stored_answers_are_the_models_answers(trained_workdir, fitted):
    """Row for row, score for score, why for why: what recommend_customer gives, for every customer, k = 12 and 5,
    and for an id that is not in customers.parquet."""
    from hmgnn import recommend

    model, name = fitted
    tables = A.locate(trained_workdir).tables
    for cid in [*_ids(trained_workdir), UNKNOWN]:
        for k in (12, 5):
            stored = answers.lookup(trained_workdir, "auto", cid, k)
            assert stored is not None
            assert stored.to_dict() == recommend.answer(model, name, tables, cid, k).to_dict(), (cid, k)
    assert answers.lookup(trained_workdir, "auto", UNKNOWN, 12).fallback == answers.UNKNOWN_CUSTOMER


def test_the_store_answers_only_what_it_holds(trained_workdir):
    cid = _ids(trained_workdir)[0]
    assert answers.lookup(trained_workdir, "gnn", cid, 12) is not None  # what auto resolved to
    assert answers.lookup(trained_workdir, "trending", cid, 12) is None  # another model
    assert answers.lookup(trained_workdir, "auto", cid, 13) is None  # more than stored
    assert answers.lookup(trained_workdir, "auto", cid, 12, filter_bought=True) is None
    with pytest.raises(Exception, match="64 hexadecimal"):
        answers.lookup(trained_workdir, "auto", "nope", 12)


def test_a_copied_model_folder_answers_from_its_store_until_its_data_changes(trained_workdir, tmp_path):
    folder = tmp_path / "copy"
    shutil.copytree(trained_workdir / A.MODEL, folder)  # new modification times, the same bytes
    cid = _ids(trained_workdir)[1]
    copied = answers.lookup(folder, "auto", cid, 12)
    assert copied is not None
    assert copied.to_dict() == answers.lookup(trained_workdir, "auto", cid, 12).to_dict()
    purchases = pl.read_parquet(folder / A.TRANSACTIONS_PARQUET)
    purchases.head(len(purchases) - 1).write_parquet(folder / A.TRANSACTIONS_PARQUET)  # a changed input
    assert answers.current(folder) is None
    assert answers.lookup(folder, "auto", cid, 12) is None


def test_an_input_rewritten_with_the_same_size_is_noticed(trained_workdir, tmp_path):
    folder = tmp_path / "copy"
    shutil.copytree(trained_workdir / A.MODEL, folder)
    path = folder / A.ARTICLES_PARQUET
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF  # same size, another content, and a new modification time
    path.write_bytes(bytes(data))
    os.utime(path, ns=(1, 1))
    assert answers.current(folder) is None


@pytest.mark.parametrize("extra", [[], ["--model", "gnn"]])
def test_the_cli_answers_from_the_store_without_torch(trained_workdir, extra):
    """`hmgnn recommend --customer-id` in a fresh process, plain or naming the stored model: the stored answer,
    torch never imported."""
    cid = _ids(trained_workdir)[2]
    code = ("import sys, io, contextlib\n"
            "from hmgnn.cli import app\n"
            "out = io.StringIO()\n"
            "with contextlib.redirect_stdout(out):\n"
            "    try:\n"
            f"        app(['recommend', '-w', {str(trained_workdir)!r}, '--customer-id', {cid!r}, '--json', *{extra!r}])\n"
            "    except SystemExit as e:\n"
            "        assert not e.code, e.code\n"
            "print(out.getvalue())\n"
            "print('torch imported:', 'torch' in sys.modules)\n")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    body, flag = done.stdout.rsplit("torch imported:", 1)
    assert flag.strip() == "False"
    assert json.loads(body) == answers.lookup(trained_workdir, "auto", cid, 12).to_dict()


def test_the_cli_ranks_as_before_where_the_store_does_not_hold(trained_workdir):
    """--filter-bought (not stored): the model's own answer, with none of the customer's bought articles."""
    cid = _ids(trained_workdir)[3]
    result = CliRunner().invoke(app, ["recommend", "-w", str(trained_workdir), "--customer-id", cid, "--json",
                                      "--filter-bought"])
    assert result.exit_code == 0, result.output
    got = json.loads(result.stdout)
    stored = answers.lookup(trained_workdir, "auto", cid, 12).to_dict()
    assert got["customer_id"] == cid and len(got["recommendations"]) == 12
    assert not any(r["why"].startswith("bought") for r in got["recommendations"])
    assert got != stored or not any(r["why"].startswith("bought") for r in stored["recommendations"])


def test_recommend_reads_the_prices_the_ranker_learned_from(trained_workdir, fitted, tmp_path):
    """The ranker's price features come from the purchases' prices in training; recommend gives it the same, from a
    workdir and from a copied model folder alike (which copies the prices)."""
    import numpy as np

    from hmgnn import recommend

    model, name = fitted
    assert model.snapshot is not None and np.isfinite(model.snapshot.article_price).any()
    folder = tmp_path / "copy"
    shutil.copytree(trained_workdir / A.MODEL, folder)
    assert "price" in pl.read_parquet_schema(folder / A.TRANSACTIONS_PARQUET)
    copied, _ = recommend.fit_model(load_config(None, [], workdir=folder), name)
    np.testing.assert_array_equal(copied.snapshot.article_price, model.snapshot.article_price)

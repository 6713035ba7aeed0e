"""`hmgnn sample`: exact time windows without leakage, downsampling with complete histories, fixed negatives,
and the build-graph + sample commands end to end."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path

import numpy as np
import polars as pl
import pytest
from tables_fixture import make_tables

from hmgnn import graph, sample
from hmgnn.artifacts import (CUSTOMERS_KEPT_PARQUET, HISTORY_PARQUET, MANIFEST, TEST_PAIRS_PARQUET,
                             TEST_PARQUET, VALIDATION_PAIRS_PARQUET, VALIDATION_PARQUET)
from hmgnn.cli import main
from hmgnn.config import Config, GraphConfig, SampleConfig
from hmgnn.errors import ConfigError, MissingArtifactError

D = dt.date.fromisoformat
FIRST, LAST = D("2020-07-01"), D("2020-09-22")
WINDOW_FILES = {"history": HISTORY_PARQUET, "validation": VALIDATION_PARQUET, "test": TEST_PARQUET}


@pytest.fixture(scope="module")
def workdir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A workdir with tables/ and graph/ (built once for the module)."""
    work = tmp_path_factory.mktemp("work")
    make_tables(work / "tables", n_customers=150, n_articles=60, n_rows=2500, seed=2,
                start=FIRST.isoformat(), end=LAST.isoformat())
    graph.run(Config(workdir=str(work), graph=GraphConfig(text_dim=4)))
    return work


def _sample(workdir: Path, out: Path, **options: object) -> Path:
    return sample.run(Config(workdir=str(workdir), sample=SampleConfig(**options)), out=out)


def _read(folder: Path) -> dict[str, pl.DataFrame]:
    frames = {name: pl.read_parquet(folder / file) for name, file in WINDOW_FILES.items()}
    frames["validation_pairs"] = pl.read_parquet(folder / VALIDATION_PAIRS_PARQUET)
    frames["test_pairs"] = pl.read_parquet(folder / TEST_PAIRS_PARQUET)
    frames["kept"] = pl.read_parquet(folder / CUSTOMERS_KEPT_PARQUET)
    return frames


@pytest.fixture(scope="module")
def default_split(workdir: Path) -> Path:
    return _sample(workdir, workdir / "split", popularity_negatives=True)


@pytest.mark.parametrize("cutoff, test_days, val_days, expected", [
    ("", 7, 7, ("2020-07-01", "2020-09-08", "2020-09-09", "2020-09-15", "2020-09-16", "2020-09-22")),
    ("2020-08-31", 7, 14, ("2020-07-01", "2020-08-17", "2020-08-18", "2020-08-31", "2020-09-01", "2020-09-07")),
    ("2020-09-20", 7, 1, ("2020-07-01", "2020-09-19", "2020-09-20", "2020-09-20", "2020-09-21", "2020-09-22")),
])
def test_time_windows(cutoff: str, test_days: int, val_days: int, expected: tuple[str, ...]) -> None:
    windows = sample.time_windows(FIRST, LAST, SampleConfig(cutoff=cutoff, test_days=test_days, val_days=val_days))
    assert tuple(windows.as_dict().values()) == expected


@pytest.mark.parametrize("options, message", [
    (SampleConfig(cutoff="2020-09-22"), r"sample\.cutoff = 2020-09-22 is outside .* 2020-07-01 to 2020-09-22"),
    (SampleConfig(cutoff="2020-06-30"), r"sample\.cutoff = 2020-06-30 is outside .* 2020-07-01 to 2020-09-22"),
    (SampleConfig(cutoff="2020-07-05"), r"sample\.cutoff .* leaves no history.* 2020-07-01 to 2020-09-22"),
    (SampleConfig(test_days=40, val_days=50), r"sample\.test_days = 40 .* leaves no history.* 2020-07-01 to"),
])
def test_windows_outside_the_data_are_config_errors(options: SampleConfig, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        sample.time_windows(FIRST, LAST, options)


def test_windows_hold_exactly_their_dates(default_split: Path, workdir: Path) -> None:
    frames = _read(default_split)
    windows = json.loads((default_split / MANIFEST).read_text())["windows"]
    bounds = {"history": ("history_start", "history_end"), "validation": ("val_start", "val_end"),
              "test": ("test_start", "test_end")}
    for name, (lo, hi) in bounds.items():
        days = frames[name]["t_dat"]
        assert days.min() == D(windows[lo]) and days.max() == D(windows[hi]), name  # every day has a purchase
        assert frames[name].schema == pl.read_parquet_schema(workdir / "tables" / "transactions.parquet")
    assert D(windows["history_end"]) < D(windows["val_start"]) and D(windows["val_end"]) < D(windows["test_start"])
    # together the windows are the transactions, row for row, in order
    tx = pl.read_parquet(workdir / "tables" / "transactions.parquet")
    assert pl.concat([frames["history"], frames["validation"], frames["test"]]).equals(tx)


def test_manifest_records_windows_and_sizes(default_split: Path) -> None:
    manifest = json.loads((default_split / MANIFEST).read_text())
    frames = _read(default_split)
    assert manifest["windows"]["test_end"] == LAST.isoformat()
    assert manifest["data_range"] == {"start": FIRST.isoformat(), "end": LAST.isoformat()}
    for name in ("history", "validation", "test", "validation_pairs", "test_pairs"):
        assert manifest["rows"][name] == frames[name].height
    assert manifest["rows"]["customers_kept"] == manifest["rows"]["customers"] == frames["kept"].height


@pytest.mark.parametrize("window", ["validation", "test"])
def test_pairs_positives_and_negatives(default_split: Path, window: str) -> None:
    frames = _read(default_split)
    pairs, bought = frames[f"{window}_pairs"], frames[window]
    assert pairs.schema == pl.Schema({"customer_index": pl.Int32, "article_index": pl.Int32, "label": pl.Int8,
                                      "kind": pl.String})
    positives = pairs.filter(pl.col("kind") == "positive")
    distinct = bought.select("customer_index", "article_index").unique()
    assert positives.height == distinct.height > 0 and (positives["label"] == 1).all()
    assert positives.join(distinct, on=["customer_index", "article_index"], how="anti").height == 0
    per_customer = positives.group_by("customer_index").len().sort("customer_index")
    for kind in ("uniform", "popularity"):
        negatives = pairs.filter(pl.col("kind") == kind)
        assert (negatives["label"] == 0).all()
        # 1:1 for each customer, and never an article that customer bought in the window
        assert negatives.group_by("customer_index").len().sort("customer_index").equals(per_customer)
        assert negatives.join(distinct, on=["customer_index", "article_index"], how="semi").height == 0
    # popularity negatives only draw articles bought before the window
    before = frames["history"] if window == "validation" else pl.concat([frames["history"], frames["validation"]])
    popular = pairs.filter(pl.col("kind") == "popularity")["article_index"]
    assert popular.is_in(before["article_index"].implode()).all()


def test_uniform_negatives_do_not_depend_on_popularity_option(default_split: Path, workdir: Path,
                                                             tmp_path: Path) -> None:
    plain = _read(_sample(workdir, tmp_path / "split"))["test_pairs"]
    assert set(plain["kind"]) == {"positive", "uniform"}
    both = _read(default_split)["test_pairs"].filter(pl.col("kind") != "popularity")
    assert plain.equals(both)


def test_downsampling_keeps_complete_histories(workdir: Path, default_split: Path, tmp_path: Path) -> None:
    frames = _read(_sample(workdir, tmp_path / "split", customers=40))
    kept = frames["kept"]["customer_index"]
    assert kept.dtype == pl.Int32 and kept.len() == 40 and kept.is_sorted() and kept.n_unique() == 40
    tx = pl.read_parquet(workdir / "tables" / "transactions.parquet")
    mine = tx.filter(pl.col("customer_index").is_in(kept.implode()))
    assert pl.concat([frames["history"], frames["validation"], frames["test"]]).equals(mine)
    assert set(tx["customer_index"].unique()) > set(kept)  # some buyers were dropped, none invented
    assert set(kept) <= set(tx["customer_index"].unique())  # only customers with a purchase are drawn
    for name in ("validation_pairs", "test_pairs"):
        assert frames[name]["customer_index"].is_in(kept.implode()).all()


def test_deterministic_for_a_seed(workdir: Path, tmp_path: Path) -> None:
    first = _sample(workdir, tmp_path / "a", customers=50, popularity_negatives=True)
    second = _sample(workdir, tmp_path / "b", customers=50, popularity_negatives=True)
    files = sorted(p.name for p in first.iterdir() if p.name != MANIFEST)
    assert len(files) == 6
    for name in files:
        assert (first / name).read_bytes() == (second / name).read_bytes(), name
    other = sample.run(Config(workdir=str(workdir), seed=7, sample=SampleConfig(customers=50)), out=tmp_path / "c")
    assert not _read(other)["kept"].equals(_read(first)["kept"])


def test_missing_graph_names_the_command(tmp_path: Path) -> None:
    with pytest.raises(MissingArtifactError, match="hmgnn build-graph"):
        sample.run(Config(workdir=str(tmp_path)))


def _cli(args: list[str]) -> int:
    try:
        main(args)
    except SystemExit as exc:
        return int(exc.code or 0)
    return 0


def test_cli_end_to_end(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    work = tmp_path / "work"
    make_tables(work / "tables", n_customers=80, n_articles=40, n_rows=1200, seed=3)
    assert _cli(["sample", "-w", str(work)]) == 1
    assert "run `hmgnn build-graph` first" in capsys.readouterr().err

    assert _cli(["build-graph", "-w", str(work), "--set", "graph.text_dim=4"]) == 0
    assert _cli(["sample", "-w", str(work), "--customers", "30", "--set", "sample.popularity_negatives=true"]) == 0
    assert "sample wrote" in capsys.readouterr().err
    manifest = json.loads((work / "split" / MANIFEST).read_text())
    assert manifest["rows"]["customers_kept"] == 30 and manifest["step_config"]["sample"]["customers"] == 30
    names = json.loads((work / "graph" / "feature_names.json").read_text())
    x = graph.load_graph_features(work / "graph")
    assert [len(names["customer"]), len(names["article"])] == [x[0].shape[1], x[1].shape[1]]
    assert "age" in names["customer"] and any(n.startswith("desc_svd_") for n in names["article"])

    # up to date: both steps skip
    assert _cli(["build-graph", "-w", str(work), "--set", "graph.text_dim=4"]) == 0
    assert _cli(["sample", "-w", str(work), "--customers", "30", "--set", "sample.popularity_negatives=true"]) == 0
    err = capsys.readouterr().err
    assert "build-graph: " in err and "sample: " in err and err.count("skipped (--force redoes it)") == 2
    assert json.loads((work / "split" / MANIFEST).read_text())["created_at"] == manifest["created_at"]

    # a bad cutoff is one line naming the key and the data's dates
    assert _cli(["sample", "-w", str(work), "--set", "sample.cutoff=2017-01-01"]) == 1
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: sample.cutoff = 2017-01-01 is outside") and "2020-06-01 to 2020-09-22" in err

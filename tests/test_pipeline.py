"""The whole pipeline through the real CLI on a tiny generated data set: the exact files each step writes."""

from __future__ import annotations

import json
from pathlib import Path

import polars as pl
import pytest

from hmgnn.cli import main

ROOT = Path(__file__).resolve().parents[1]
FAST = ["--set", "train.epochs=2", "--set", "train.hidden=16", "--set", "train.batch_size=4096"]


def hmgnn(*args: str) -> None:
    try:
        main([*args])
    except SystemExit as done:
        assert done.code in (0, None), f"hmgnn {' '.join(args)} exited with {done.code}"


def files(folder: Path) -> set[str]:
    return {p.name for p in folder.iterdir()}


def test_pipeline_end_to_end(tmp_path, capsys):
    common = ["-c", str(ROOT / "configs" / "tiny.toml"), "-w", str(tmp_path)]
    for step in ("synth", "ingest", "build-graph", "sample"):
        hmgnn(step, *common)
    hmgnn("train", *common, *FAST)
    hmgnn("evaluate", *common, "--set", "evaluate.models=['popular','repurchase','trending']")
    submission = tmp_path / "submission.csv"
    hmgnn("recommend", *common, "--all", "--out", str(submission))  # the README's Kaggle step: no --model
    hmgnn("recommend", *common, "--model", "gnn", "--all", "--out", str(tmp_path / "gnn.csv"))
    assert submission.read_bytes() == (tmp_path / "gnn.csv").read_bytes()  # by default, the trained gnn's

    assert files(tmp_path / "raw") == {"transactions_train.csv", "customers.csv", "articles.csv", "manifest.json"}
    assert files(tmp_path / "tables") == {"transactions.parquet", "customers.parquet", "articles.parquet", "manifest.json"}
    assert files(tmp_path / "graph") == {"graph.pt", "feature_names.json", "manifest.json"}
    assert {"history.parquet", "validation.parquet", "test.parquet", "validation_pairs.parquet",
            "test_pairs.parquet", "customers_kept.parquet", "manifest.json"} <= files(tmp_path / "split")
    assert {"model.pt", "train_log.csv", "train_curve.png", "manifest.json"} <= files(tmp_path / "model")
    assert {"metrics.json", "report.md", "manifest.json"} <= files(tmp_path / "evaluate")

    # every step's manifest records what it read and wrote
    raw_rows = json.loads((tmp_path / "raw" / "manifest.json").read_text())["rows"]
    tables = json.loads((tmp_path / "tables" / "manifest.json").read_text())
    assert tables["rows"]["transactions"] == raw_rows["transactions"]
    assert {Path(i["path"]).name for i in tables["inputs"]} == {"transactions_train.csv", "customers.csv", "articles.csv"}

    metrics = json.loads((tmp_path / "evaluate" / "metrics.json").read_text())
    assert set(metrics["models"]) == {"popular", "repurchase", "trending", "gnn", "gnn-retrieval", "ranker-only", "auto"}
    # the auto row is the model train chose, and the headline's GNN contribution is gnn over ranker-only
    head, models = metrics["headline"], metrics["models"]
    assert models["auto"] == models[head["auto_answers_with"]]
    assert head["gnn_vs_ranker_only"]["ratio"] == pytest.approx(models["gnn"]["map@12"] / models["ranker-only"]["map@12"])
    low, high = head["gnn_vs_ranker_only"]["ci95"]
    assert low <= head["gnn_vs_ranker_only"]["ratio"] <= high
    assert (tmp_path / "evaluate" / "report.md").read_text().splitlines()[2].startswith("Winner on MAP@12: ")
    # the test week's buyers, every one of them scored (the Kaggle protocol: each customer with a purchase that week)
    test = pl.read_parquet(tmp_path / "split" / "test.parquet")
    assert metrics["split"]["test_customers"] == metrics["split"]["scored_customers"] == test["customer_index"].n_unique()
    assert metrics["split"]["test_customers"] > 0
    # the split has validation pairs: each model's accuracy and F1 cut is chosen on them, and the report says so
    assert {d["threshold_from"] for d in metrics["details"].values()} == {"validation pairs"}
    assert "best F1 on the validation window's pairs" in (tmp_path / "evaluate" / "report.md").read_text()
    for values in metrics["models"].values():
        assert 0.0 <= values["map@12"] <= 1.0 and 0.0 <= values["auc"] <= 1.0

    frame = pl.read_csv(submission, schema_overrides={"customer_id": pl.String, "prediction": pl.String})
    customers = pl.read_parquet(tmp_path / "tables" / "customers.parquet")
    assert frame.columns == ["customer_id", "prediction"] and frame.height == customers.height
    predictions = frame["prediction"].str.split(" ")
    assert predictions.list.len().min() == 12
    assert predictions.explode().str.len_chars().unique().to_list() == [10]

    # a second run finds every step up to date
    capsys.readouterr()
    for step in ("synth", "ingest", "build-graph", "sample"):
        hmgnn(step, *common)
    err = " ".join(capsys.readouterr().err.split())  # rich wraps long lines
    assert err.count("is up to date") == 4 and "wrote" not in err  # a skipped step says only that

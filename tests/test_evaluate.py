"""`hmgnn evaluate` on a hand-made tables/ + split/ whose metrics are known: the files written, their contents,
the exact MAP@12 of the baselines, and the CLI's table."""

import datetime as dt
import hashlib
import json
import subprocess
import sys

import polars as pl
import pytest
from typer.testing import CliRunner

from hmgnn import evaluate
from hmgnn.artifacts import MANIFEST
from hmgnn.cli import app
from hmgnn.config import load_config
from hmgnn.errors import ConfigError, MissingArtifactError

D = dt.date.fromisoformat
# (customer, article, day). Validation = 09-08..09-14: article a bought 6 - a times (a = 0..5), so `popular`
# ranks 0, 1, ..., 5, then 6 and 7 (bought once in history), then 8, 9.
HISTORY = [(0, 6, "2020-09-02"), (1, 7, "2020-09-03")]
VALIDATION = [
    (0, 0, "2020-09-08"), (0, 0, "2020-09-14"), (1, 0, "2020-09-09"), (2, 0, "2020-09-08"), (3, 0, "2020-09-08"),
    (4, 0, "2020-09-08"),
    (1, 1, "2020-09-10"), (2, 1, "2020-09-09"), (3, 1, "2020-09-09"), (4, 1, "2020-09-09"), (5, 1, "2020-09-10"),
    (2, 2, "2020-09-10"), (3, 2, "2020-09-10"), (4, 2, "2020-09-10"), (5, 2, "2020-09-11"),
    (3, 3, "2020-09-11"), (4, 3, "2020-09-11"), (5, 3, "2020-09-12"),
    (4, 4, "2020-09-12"), (5, 4, "2020-09-13"),
    (5, 5, "2020-09-14"),
]
# customer 0 re-buys article 0 (twice); customer 5 buys 2 and 5; customer 1 (aged 30) buys 9
TEST = [(0, 0, "2020-09-15"), (0, 0, "2020-09-16"), (5, 2, "2020-09-17"), (5, 5, "2020-09-18"),
        (1, 9, "2020-09-20")]
# customers 6 (aged 28) and 7 (age unknown) never buy
AGES = [22, 30, 30, 40, None, 60, 28, None]
N_ARTICLES = 10
TEST_PAIRS = [(0, 0, 1, "positive"), (5, 2, 1, "positive"), (5, 5, 1, "positive"), (1, 9, 1, "positive"),
              (0, 8, 0, "uniform"), (5, 9, 0, "uniform"), (5, 7, 0, "uniform"), (1, 3, 0, "uniform"),
              (0, 1, 0, "popularity")]

# Hand-computed MAP@12 on the test window (models fit up to 09-14):
#   popular:     customer 0 hit at rank 1 -> 1; customer 5 hits at 3 and 6 -> (1/3 + 2/6) / 2; customer 1: 9 at 10
#   repurchase:  customer 0: [0, 6, ...] -> 1; customer 5: [5, 4, 3, 2, ...] -> (1 + 2/4) / 2;
#                customer 1: [1, 0, 7, 2, 3, 4, 5, 6, 8, 9] -> 9 at rank 10
#   popular-new: customer 0 bought 0 before -> 0; customer 1: [2, 3, 4, 5, 6, 8, 9] -> 9 at 7; customer 5 -> 0
EXPECTED_MAP = {"popular": (1 + 1 / 3 + 1 / 10) / 3, "repurchase": (1 + 0.75 + 0.1) / 3, "popular-new": (1 / 7) / 3}
# popular's pair scores: positives 6, 4, 1 + 1/7, 0; uniform negatives 0, 0, 1/7, 3 -> AUC 12 / 16
EXPECTED_POPULAR_AUC = 0.75


def customer_id(i: int) -> str:
    return hashlib.sha256(f"customer {i}".encode()).hexdigest()


def _purchases(rows: list[tuple[int, int, str]]) -> pl.DataFrame:
    return pl.DataFrame({
        "customer_index": pl.Series([r[0] for r in rows], dtype=pl.Int32),
        "article_index": pl.Series([r[1] for r in rows], dtype=pl.Int32),
        "t_dat": pl.Series([D(r[2]) for r in rows], dtype=pl.Date),
        "price": pl.Series([0.0254] * len(rows), dtype=pl.Float32),
        "sales_channel_id": pl.Series([2] * len(rows), dtype=pl.Int8),
    }).sort("t_dat", "customer_index")


def write_workdir(root, split: bool = True):
    """A workdir with tables/ (and split/) in the docs/CONTRACT.md schema; returns its path."""
    tables = root / "tables"
    tables.mkdir(parents=True)
    _purchases(HISTORY + VALIDATION + TEST).write_parquet(tables / "transactions.parquet")
    n = len(AGES)
    pl.DataFrame({
        "customer_index": pl.Series(range(n), dtype=pl.Int32),
        "customer_id": [customer_id(i) for i in range(n)],
        "FN": pl.Series([1] * n, dtype=pl.Int8), "Active": pl.Series([1] * n, dtype=pl.Int8),
        "club_member_status": ["ACTIVE"] * n, "fashion_news_frequency": ["NONE"] * n,
        "age": pl.Series(AGES, dtype=pl.Int16), "postal_code": ["x"] * n, "known": [True] * n,
    }).write_parquet(tables / "customers.parquet")
    pl.DataFrame({
        "article_index": pl.Series(range(N_ARTICLES), dtype=pl.Int32),
        "article_id": pl.Series([108775015 + 1000 * i for i in range(N_ARTICLES)], dtype=pl.Int64),
        "product_code": pl.Series([108775 + i for i in range(N_ARTICLES)], dtype=pl.Int32),
        "prod_name": [f"Strap top {i}" for i in range(N_ARTICLES)],
        "product_type_name": ["Vest top"] * N_ARTICLES,
        "colour_group_name": ["Black", "White"] * (N_ARTICLES // 2),
        "known": [True] * N_ARTICLES,
    }).write_parquet(tables / "articles.parquet")
    if split:
        out = root / "split"
        out.mkdir()
        _purchases(HISTORY).write_parquet(out / "history.parquet")
        _purchases(VALIDATION).write_parquet(out / "validation.parquet")
        _purchases(TEST).write_parquet(out / "test.parquet")
        pl.DataFrame({
            "customer_index": pl.Series([p[0] for p in TEST_PAIRS], dtype=pl.Int32),
            "article_index": pl.Series([p[1] for p in TEST_PAIRS], dtype=pl.Int32),
            "label": pl.Series([p[2] for p in TEST_PAIRS], dtype=pl.Int8),
            "kind": [p[3] for p in TEST_PAIRS],
        }).write_parquet(out / "test_pairs.parquet")
        pl.DataFrame({"customer_index": pl.Series(range(n), dtype=pl.Int32)}).write_parquet(
            out / "customers_kept.parquet")
        windows = {"history_start": "2020-09-02", "history_end": "2020-09-07", "val_start": "2020-09-08",
                   "val_end": "2020-09-14", "test_start": "2020-09-15", "test_end": "2020-09-21"}
        (out / MANIFEST).write_text(json.dumps({"step": "sample", "windows": windows}))
    return root


@pytest.fixture
def workdir(tmp_path):
    return write_workdir(tmp_path / "w")


def _cfg(workdir, *overrides):
    return load_config(None, ["evaluate.max_k_plot=20", *overrides], workdir=workdir)


def test_evaluate_writes_the_known_metrics(workdir):
    out = evaluate.run(_cfg(workdir))
    assert sorted(p.name for p in out.iterdir()) == sorted(
        ["manifest.json", "metrics.json", "report.md", "map_at_k.png", "recall_at_k.png", "popularity.png"])
    m = json.loads((out / "metrics.json").read_text())
    assert {k: m["split"][k] for k in ("cutoff", "test_start", "test_end", "test_customers")} == {
        "cutoff": "2020-09-14", "test_start": "2020-09-15", "test_end": "2020-09-21", "test_customers": 3}
    assert list(m["models"]) == ["popular", "popular-new", "repurchase", "trending"]
    keys = ["map@12", "recall@12", "hit@12", "ndcg@12", "precision@12", "coverage@12", "recall@20", "auc", "ap",
            "accuracy", "f1"]
    for name, values in m["models"].items():
        assert list(values) == keys
        assert all(0 <= values[k] <= 1 for k in keys), name
    for name, expected in EXPECTED_MAP.items():
        assert m["models"][name]["map@12"] == pytest.approx(expected), name
    assert m["models"]["popular"]["auc"] == pytest.approx(EXPECTED_POPULAR_AUC)
    assert m["models"]["popular"]["recall@12"] == pytest.approx((1 + 1 + 1) / 3)
    assert len(m["curves"]["popular"]["map"]) == 20
    assert m["curves"]["popular"]["map"][11] == pytest.approx(EXPECTED_MAP["popular"])
    report = (out / "report.md").read_text()
    assert "rank-normalised" in report and "map_at_k.png" in report and "| popular |" in report
    # the four baselines share one score mapping: its sentence is said once, naming them all
    assert report.count(evaluate.SCORE_MAPPING["rank"]) == 1
    assert f"  - popular, popular-new, repurchase, trending: {evaluate.SCORE_MAPPING['rank']}" in report
    assert "  - cuts: popular 0.5000, popular-new 0.5000, repurchase 0.5000, trending 0.5000" in report
    assert "95% interval" in report and "Settings: seed" in report
    for name, details in m["details"].items():  # the interval holds the mean; warm + cold = every scored customer
        low, high = details["map_ci95"]
        assert low <= m["models"][name]["map@12"] <= high, name
        assert details["warm_customers"] + details["cold_customers"] == m["split"]["scored_customers"]
        # no validation pairs in this split: accuracy and F1 cut at 0.5
        assert (details["threshold_from"], details["threshold"]) == ("fixed", 0.5), name
    for png in ("map_at_k.png", "recall_at_k.png", "popularity.png"):
        assert (out / png).read_bytes()[:4] == b"\x89PNG"


def test_validation_window_fits_on_history_only(workdir):
    out = evaluate.run(_cfg(workdir, "evaluate.window='validation'", "evaluate.models=['repurchase']"))
    m = json.loads((out / "metrics.json").read_text())
    assert m["split"]["window"] == "validation" and m["split"]["scored_customers"] == 6
    assert m["split"]["as_of"] == "2020-09-07"
    # no validation pairs in this split: the binary metrics are null, and the report says why
    assert m["models"]["repurchase"]["auc"] is None
    assert "n/a" in (out / "report.md").read_text()


def test_second_run_is_skipped_unless_forced(workdir):
    cfg = _cfg(workdir, "evaluate.models=['popular']")
    out = evaluate.run(cfg)
    stamp = (out / "manifest.json").read_text()
    assert (evaluate.run(cfg) / "manifest.json").read_text() == stamp
    (out / "planted.txt").write_text("x")
    assert not (evaluate.run(cfg, force=True) / "planted.txt").exists()  # the folder was rebuilt


def test_missing_split_names_the_command(tmp_path):
    write_workdir(tmp_path / "w", split=False)
    with pytest.raises(MissingArtifactError, match="hmgnn sample"):
        evaluate.run(_cfg(tmp_path / "w"))


def test_unknown_model_is_a_config_error(workdir):
    with pytest.raises(ConfigError, match="unknown model 'popularr'"):
        evaluate.run(_cfg(workdir, "evaluate.models=['popularr']"))


def test_cli_prints_the_metrics_table(workdir):
    result = CliRunner().invoke(app, ["evaluate", "-w", str(workdir), "--set", "evaluate.max_k_plot=12",
                                      "--set", "evaluate.models=['popular','repurchase']"])
    assert result.exit_code == 0, result.output
    assert "map@12" in result.stdout and "repurchase" in result.stdout
    metrics = json.loads((workdir / "evaluate" / "metrics.json").read_text())["models"]
    assert set(metrics) == {"popular", "repurchase"}
    assert all(0 <= m["map@12"] <= m["hit@12"] <= 1 for m in metrics.values())
    assert f"{metrics['repurchase']['map@12']:.4f}" in result.stdout  # the table shows what was written


def test_model_colours_are_fixed_per_name():
    known = evaluate.PLOT_MODELS
    assert len({evaluate.model_colour(n) for n in known}) == len(known)  # distinct
    assert [evaluate.model_colour(n) for n in known] == list(evaluate.PLOT_COLOURS[:len(known)])
    # an unknown name: the same colour in every process (no per-process hash seed), outside the known ones
    assert evaluate.model_colour("my-model") == evaluate.model_colour("my-model")
    assert evaluate.model_colour("my-model") in evaluate.PLOT_COLOURS[len(known):]
    other = subprocess.run([sys.executable, "-c", "from hmgnn.evaluate import model_colour; "
                            "print(model_colour('my-model'))"], capture_output=True, text=True, check=True)
    assert other.stdout.strip() == evaluate.model_colour("my-model")


def test_plot_lines_use_the_model_colours(workdir, monkeypatch, tmp_path):
    import matplotlib.axes

    drawn = {}
    plot = matplotlib.axes.Axes.plot

    def recording(self, *args, label=None, color=None, **kwargs):
        drawn.setdefault(label, set()).add(color)
        return plot(self, *args, label=label, color=color, **kwargs)

    monkeypatch.setattr(matplotlib.axes.Axes, "plot", recording)
    evaluate.run(_cfg(workdir, "evaluate.models=['trending','popular']"), out=tmp_path / "evaluate")
    assert drawn["popular"] == {evaluate.model_colour("popular")}
    assert drawn["trending"] == {evaluate.model_colour("trending")}


def test_the_report_describes_the_model_it_scores_not_the_current_config(tmp_path):
    # a model trained with at most 300 trees, of which early stopping kept 19: `evaluate --set ranker.trees=50`
    # (or any other ranker or train setting) must not change what the report says the gnn is
    model = tmp_path / "work" / "model"
    model.mkdir(parents=True)
    trained = load_config(None, ["train.hidden=32", "ranker.gnn_candidates=80"], tmp_path / "work").to_dict()
    trained["ranker"]["trees"] = 300
    (model / MANIFEST).write_text(json.dumps({"step": "train", "config": trained,
                                              "ranker": {"trees": 19, "leaves": 4, "rows": 1000}}))
    cfg = load_config(None, ["ranker.trees=50", "ranker.objective=binary", "train.hidden=128",
                             "ranker.gnn_candidates=7"], tmp_path / "work")
    text = " ".join(evaluate._settings(cfg, ["gnn", "popular"]))
    assert "lambdarank, 19 trees of 4 leaves, as many as early stopping on held-out label customers kept of at " \
           "most 300" in text
    assert "width 32" in text and "top 80 articles" in text
    assert "50 trees" not in text and "binary" not in text and "width 128" not in text and "top 7 " not in text
    # after `hmgnn update --refit-ranker`: the newest refit's trees
    (model / MANIFEST).write_text(json.dumps({"step": "train", "config": trained,
                                              "ranker": {"trees": 19, "leaves": 4, "rows": 1000},
                                              "updates": [{"ranker": {"trees": 12, "window": "x"}}]}))
    assert "lambdarank, 12 trees, fit again by `hmgnn update --refit-ranker`" in " ".join(
        evaluate._settings(cfg, ["gnn"]))

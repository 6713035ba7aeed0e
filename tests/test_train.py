"""`hmgnn train`: a tiny run end to end, determinism, resume after a kill, and the GNN behind the interface."""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
import sys
from pathlib import Path

import numpy as np
import polars as pl
import pytest
import scipy.sparse as sp
import torch

from hmgnn import artifacts, train
from hmgnn.config import load_config
from hmgnn.graph import load_graph_features
from hmgnn.portable import unpack_rows
from hmgnn.registry import create_model
from hmgnn.interactions import Interactions, WindowTruth
from hmgnn.models.base import lookup
from hmgnn.models.gnn import HeteroSAGE
from hmgnn.ranking.checkpoint import Checkpoint, load as load_checkpoint
from hmgnn.ranking.recommender import GNNRetrievalRecommender

from tables_fixture import FAST_TRAIN as FAST



@pytest.fixture(scope="module")
def workdir(split_workdir) -> Path:
    return split_workdir


def _cfg(wd: Path, *extra: str):
    return load_config(None, FAST + list(extra), workdir=wd)


def _state(path: Path) -> dict[str, torch.Tensor]:
    return torch.load(path / "model.pt", weights_only=True)["state_dict"]


def test_train_writes_a_self_describing_checkpoint(workdir):
    out = train.run(_cfg(workdir))
    assert {"model.pt", "train_log.csv", "train_curve.png", "manifest.json", "ranker.json",
            "README.md"} <= {p.name for p in out.iterdir()}
    card = (out / "README.md").read_text()  # the model card: data, windows, the GNN, the ranker, how to load
    assert "label window" in card and "hmgnn.load(" in card and "validation MAP@12" in card
    assert f"--model-dir {out}" in card and f"| `features.pt` | {(out / 'features.pt').stat().st_size:,} |" in card
    ckpt = torch.load(out / "model.pt", weights_only=True)
    # model.pt holds the Checkpoint's fields, no other, and loads into it, every part checked
    assert list(ckpt) == [field.name for field in dataclasses.fields(Checkpoint)]
    checkpoint = load_checkpoint(out / "model.pt")
    assert checkpoint.to_dict().keys() == ckpt.keys() and checkpoint.recipe == "gnn" and checkpoint.updates == []
    assert checkpoint.ranker is not None and checkpoint.config["seed"] == checkpoint.seed
    assert checkpoint.graph_fingerprint == artifacts.fingerprint(workdir / "graph" / "graph.pt")
    assert isinstance(ckpt["retrieval_drops_bought"], bool)
    # self-contained: the data recommending reads, recorded by model.pt
    assert set(ckpt["files"]) == {"features.pt", "transactions.parquet", "customers.parquet", "articles.parquet"}
    purchases = ["customer_index", "article_index", "t_dat", "price"]
    assert pl.read_parquet(out / "transactions.parquet").equals(
        pl.read_parquet(workdir / "tables" / "transactions.parquet", columns=purchases))
    features = unpack_rows(torch.load(out / "features.pt", weights_only=True)["article"])
    assert torch.equal(features, load_graph_features(workdir / "graph")[1])
    report = json.loads((out / "ranker.json").read_text())
    # rows: the candidates of the labelled customers who bought one, so no more than every window's pairs; a
    # window's recall over all sources is at least each source's and at most their sum
    assert 0 < report["rows"] <= sum(w["pairs"] for w in report["windows"])
    for window in report["windows"]:
        recall = window["recall"]
        sources = [v for k, v in recall.items() if k != "all"]
        assert 0 < max(sources) <= recall["all"] <= min(1.0, sum(sources) + 1e-9)
        assert window["positives"] <= window["pairs"] and window["positives"] <= window["purchases"]
    # the GNN's training purchases end before the ranker's earliest label window
    manifest = json.loads((workdir / "split" / "manifest.json").read_text())
    assert report["windows"][0]["as_of"] == manifest["windows"]["history_end"]
    assert ckpt["model_args"]["hidden_channels"] == 16
    log = (out / "train_log.csv").read_text().splitlines()
    assert log[0].startswith("epoch,loss,val_map@12") and len(log) == 4
    # up to date: a second run skips
    written = (out / "model.pt").stat().st_mtime_ns
    assert train.run(_cfg(workdir)) == out and (out / "model.pt").stat().st_mtime_ns == written
    # a model/ whose model.pt another version wrote (other Checkpoint fields in its manifest) is trained again
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["checkpoint_fields"] == list(ckpt)
    manifest["checkpoint_fields"] = [*ckpt, "validation_map@12"]
    (out / "manifest.json").write_text(json.dumps(manifest))
    assert train.run(_cfg(workdir)) == out and (out / "model.pt").stat().st_mtime_ns != written
    assert json.loads((out / "manifest.json").read_text())["checkpoint_fields"] == list(ckpt)


def test_same_seed_same_model(workdir, tmp_path):
    a = train.run(_cfg(workdir), out=tmp_path / "a")
    b = train.run(_cfg(workdir), out=tmp_path / "b")
    for key, value in _state(a).items():
        assert torch.equal(value, _state(b)[key]), key


def test_resume_after_kill_matches_uninterrupted(workdir, tmp_path, monkeypatch):
    whole = train.run(_cfg(workdir, "train.supervision=disjoint"), out=tmp_path / "whole")
    calls = {"n": 0}
    original = train.Trainer.train_epoch

    def killed_in_epoch_three(self, *args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 3:
            raise KeyboardInterrupt  # as if the process died mid-epoch
        return original(self, *args, **kwargs)

    monkeypatch.setattr(train.Trainer, "train_epoch", killed_in_epoch_three)
    with pytest.raises(KeyboardInterrupt):
        train.run(_cfg(workdir, "train.supervision=disjoint"), out=tmp_path / "resumed")
    assert not (tmp_path / "resumed").exists()
    assert (tmp_path / ".resumed.partial" / "state.pt").exists()
    monkeypatch.setattr(train.Trainer, "train_epoch", original)
    resumed = train.run(_cfg(workdir, "train.supervision=disjoint"), out=tmp_path / "resumed")
    assert not (tmp_path / ".resumed.partial").exists()
    for key, value in _state(whole).items():
        assert torch.allclose(value, _state(resumed)[key], atol=1e-6), key


def test_trained_gnn_ranks_with_its_ranker_and_scores_any_pair(workdir):
    import polars as pl

    from hmgnn.metrics import binary_metrics

    cfg = _cfg(workdir)
    train.run(cfg)
    model = create_model("gnn", cfg)
    assert model.ranker is not None and model.score_kind == "rank"
    history = pl.read_parquet(workdir / "split" / "history.parquet")
    model.fit(history, max(history["t_dat"]))
    pairs = pl.read_parquet(workdir / "split" / "validation_pairs.parquet").filter(
        pl.col("kind").is_in(["positive", "uniform"]))
    p = model.score(pairs["customer_index"].to_numpy(), pairs["article_index"].to_numpy())
    assert np.isfinite(p).all()
    # the window its ranker learned from: bought pairs score above the uniform negatives
    assert binary_metrics(pairs["label"].to_numpy(), p)["auc"] > 0.7
    # a recommended article's score is the ranker's score of that pair
    customers = np.unique(pairs["customer_index"].to_numpy())[:4]
    warm = customers[~model.is_cold(customers)]
    ids, vals = model.recommend(warm, k=5)
    np.testing.assert_allclose(model.score(np.repeat(warm, 5), ids.ravel()), vals.ravel(), rtol=1e-6)
    # a customer asked twice in one call gets the same answer twice (candidates are per customer)
    twice = np.r_[warm, warm[:2]]
    again, again_vals = model.recommend(twice, k=5)
    assert np.array_equal(again, np.r_[ids, ids[:2]]) and np.array_equal(again_vals, np.r_[vals, vals[:2]])
    assert torch.equal(model.score_all(twice), torch.cat([model.score_all(warm), model.score_all(warm[:2])]))


def test_time_budget_ends_training_mid_epoch_with_a_model(workdir, tmp_path):
    import polars as pl

    full = train.run(_cfg(workdir, "train.batch_size=64", "train.epochs=1"), out=tmp_path / "full")
    steps = pl.read_csv(full / "train_log.csv")["steps"].to_list()
    assert steps[0] > 1
    # a budget spent by the first step: one step of epoch 1, validated, logged, and a complete model.pt
    out = train.run(_cfg(workdir, "train.batch_size=64", "train.max_minutes=1e-9"), out=tmp_path / "capped")
    log = pl.read_csv(out / "train_log.csv")
    assert log["epoch"].to_list() == [1] and log["steps"].to_list() == [1]
    checkpoint = torch.load(out / "model.pt", weights_only=True)
    assert checkpoint["best_epoch"] == 1 and checkpoint["ranker"] is not None


def test_refit_trains_the_recommending_gnn_on_every_purchase(workdir, tmp_path):
    import polars as pl

    never = train.run(_cfg(workdir, "train.refit=never"), out=tmp_path / "never")
    always = train.run(_cfg(workdir, "train.refit=always"), out=tmp_path / "always")
    split = json.loads((workdir / "split" / "manifest.json").read_text())["windows"]
    first, second = (json.loads((d / "manifest.json").read_text()) for d in (never, always))
    assert first["refit"] is None
    assert second["refit"]["through"] == split["val_end"] and second["refit"]["epochs"] == second["rows"]["best_epoch"]
    # the same first GNN (same log, same ranker), a different one recommends
    logs = [pl.read_csv(d / "train_log.csv").drop("seconds") for d in (never, always)]
    assert logs[0].equals(logs[1])
    rankers = [json.loads((d / "ranker.json").read_text()) for d in (never, always)]
    assert rankers[0]["importance"] == rankers[1]["importance"]
    assert any(not torch.equal(v, _state(always)[k]) for k, v in _state(never).items())
    # auto: a refit only where the ranker stacks more than one label window
    one = train.run(_cfg(workdir, "ranker.windows=1"), out=tmp_path / "one")
    assert json.loads((one / "manifest.json").read_text())["refit"] is None


@pytest.mark.parametrize("extra", [["train.loss=bce"], ["train.loss=softmax"], ["train.negatives=popularity"],
                                   ["train.decoder=mlp"], ["train.time_features=false"]])
def test_variants_train(workdir, tmp_path, extra):
    out = train.run(_cfg(workdir, *extra), out=tmp_path / "m")
    checkpoint = artifacts.load_torch(out / "model.pt", "model")
    key, value = extra[0].split("=")
    assert str(checkpoint["train_config"][key.split(".")[1]]).lower() == value  # the variant is what was trained
    log = pl.read_csv(out / artifacts.TRAIN_LOG)
    assert log.height >= 1 and log["loss"].is_finite().all()


def test_reference_recipe_goes_to_its_own_folder(workdir):
    cfg = _cfg(workdir, "train.recipe=reference")
    out = train.run(cfg)
    assert out == workdir / "reference"
    args = torch.load(out / "model.pt", weights_only=True)["model_args"]
    assert args["hidden_channels"] == 128 and args["id_embeddings"] is False


def test_gnn_recommender_interface(workdir):
    cfg = _cfg(workdir)
    train.run(cfg)
    model = create_model("gnn", cfg)
    import polars as pl

    history = pl.read_parquet(workdir / "split" / "history.parquet")
    n_c = pl.read_parquet(workdir / "tables" / "customers.parquet").height
    n_a = pl.read_parquet(workdir / "tables" / "articles.parquet").height
    model.fit(Interactions.from_frame(history, n_c, n_a))
    ids, scores = model.recommend(int(history["customer_index"][0]), k=12)
    assert ids.shape == (12,) and np.all(np.diff(scores) <= 0)
    ids2, _ = model.recommend(np.arange(5), k=12, filter_already_bought=True)
    assert ids2.shape == (5, 12)
    again, _ = create_model("gnn", cfg).fit(Interactions.from_frame(history, n_c, n_a)).recommend(np.arange(5), k=12,
                                                                                                filter_already_bought=True)
    assert np.array_equal(ids2, again)


def test_same_seed_same_model_across_processes(workdir, tmp_path):
    # separate processes schedule threads differently; deterministic kernels keep the sums in one order
    import subprocess

    outs = [tmp_path / f"p{i}" for i in range(2)]
    sets = [arg for item in FAST for arg in ("--set", item)]
    for out in outs:
        subprocess.run([sys.executable, "-m", "hmgnn.cli", "train", "-w", str(workdir), "--out", str(out), *sets],
                       check=True, capture_output=True)
    for key, value in _state(outs[0]).items():
        assert torch.equal(value, _state(outs[1])[key]), key


def _rp3(bought: np.ndarray, beta: float) -> np.ndarray:
    """RP3beta by hand on a dense 0/1 purchase matrix: customer -> article -> buyer -> article, over degree^beta."""
    c_deg, a_deg = bought.sum(1, keepdims=True), bought.sum(0)
    step_ca = bought / np.maximum(c_deg, 1)
    step_ac = bought.T / np.maximum(a_deg, 1)[:, None]
    return step_ca @ step_ac @ step_ca / np.maximum(a_deg, 1) ** beta


def test_random_walk_is_rp3beta_scaled_by_each_customers_std():
    from hmgnn.ranking.candidates import RandomWalk
    from hmgnn.ranking.features import ArticleMeta, Snapshot

    pairs = [(0, 0), (0, 1), (1, 1), (1, 2), (2, 2), (2, 3), (3, 0), (3, 3), (3, 4), (0, 1)]  # a repeat counts once
    c, a = (np.array(x, np.int32) for x in zip(*pairs))
    inter = Interactions(c, a, np.full(len(c), np.datetime64("2020-09-01"), "datetime64[D]"), 5, 6)
    meta = ArticleMeta(np.arange(6, dtype=np.int32), {})
    dense = np.zeros((5, 6))
    for ci, ai in pairs:
        dense[ci, ai] = 1
    want = _rp3(dense, 0.5)
    got = RandomWalk(Snapshot(inter, dt.date(2020, 9, 1), meta), beta=0.5).dense(np.array([3, 0, 4])).numpy()
    for row, customer in enumerate([3, 0]):
        assert np.allclose(got[row], want[customer] / want[customer].std(), atol=1e-5)
    assert not got[2].any()  # no purchases: no walk
    assert (got[:, 5] == 0).all()  # nobody bought article 5: unreachable


def test_validation_scores_only_customers_with_a_history(workdir):
    cfg = _cfg(workdir)
    data = train.load_training_data(workdir / "graph", workdir / "split", workdir / "tables")
    trainer = train.Trainer(cfg.train, cfg.seed, data, torch.device("cpu"))
    seen = np.bincount(data.history.customer_index, minlength=data.history.n_customers) > 0
    window = np.unique(data.validation.customer_index)
    assert (~seen[window]).any(), "the fixture needs a validation buyer without a history"
    assert set(trainer.val_truth.customers) == set(window[seen[window]])
    keep = np.isin(trainer.val_truth.bought_customers, window[~seen[window]])
    assert not keep.any()


def test_validation_without_any_known_buyer_is_a_clear_error(workdir):
    import dataclasses

    from hmgnn.errors import InputError

    cfg = _cfg(workdir)
    data = train.load_training_data(workdir / "graph", workdir / "split", workdir / "tables")
    seen = np.bincount(data.history.customer_index, minlength=data.history.n_customers) > 0
    only_new = data.validation.subset(~seen[data.validation.customer_index])
    with pytest.raises(InputError, match="sample.cutoff"):
        train.Trainer(cfg.train, cfg.seed, dataclasses.replace(data, validation=only_new), torch.device("cpu"))


def test_validation_map_can_leave_out_the_bought_articles():
    # customer c's best article is c (bought before), then c + 4 (bought in the window): MAP@12 1/2 with the bought
    # article ranked, 1 without it
    model = HeteroSAGE(num_customers=4, num_articles=10, hidden_channels=8).eval()
    c_emb, a_emb = torch.zeros(4, 8), torch.zeros(10, 8)
    for c in range(4):
        c_emb[c, c], a_emb[c, c], a_emb[c + 4, c] = 1.0, 2.0, 1.0
    truth = WindowTruth(np.arange(4), np.arange(4), np.arange(4) + 4)
    bought = sp.csr_matrix((np.ones(4), (np.arange(4), np.arange(4))), shape=(4, 10))
    assert train.validation_map(model, c_emb, a_emb, truth) == pytest.approx(0.5)
    assert train.validation_map(model, c_emb, a_emb, truth, bought=bought) == pytest.approx(1.0)
    # every score tied: the smaller article first, whatever the threads (article c + 4 at rank c + 5)
    tied = torch.zeros(10, 8)
    assert train.validation_map(model, c_emb, tied, truth) == pytest.approx(np.mean(1 / (np.arange(4) + 5)))


def test_gnn_retrieval_leaves_out_bought_articles_when_training_chose_to(workdir):
    import polars as pl

    cfg = _cfg(workdir)
    out = train.run(cfg)
    history = pl.read_parquet(workdir / "split" / "history.parquet")
    n_c = pl.read_parquet(workdir / "tables" / "customers.parquet").height
    n_a = pl.read_parquet(workdir / "tables" / "articles.parquet").height
    inter = Interactions.from_frame(history, n_c, n_a)
    customers = np.unique(inter.customer_index)[:20]
    checkpoint = load_checkpoint(out / "model.pt")
    for drops in (False, True):
        checkpoint.retrieval_drops_bought, checkpoint.retrieval_head = drops, None
        customer_x, article_x, _ = load_graph_features(workdir / "graph")
        model = GNNRetrievalRecommender(checkpoint, customer_x, article_x).fit(inter)
        ids, _ = model.recommend(customers, k=12)
        bought = lookup(model.user_items, np.repeat(customers, 12), ids.ravel()) > 0
        assert model.filters_bought is drops and bought.any() != drops


def test_retrieval_head_learns_that_the_window_rebuys_the_recent_purchase():
    # customer c bought article c yesterday and article c + 4 200 days ago; the embeddings rank article 8 (never
    # bought) first, then c + 4, then c; the window buys c: the head lifts the recent purchase above both
    from hmgnn.models.node_inputs import OwnEdges

    model = HeteroSAGE(num_customers=4, num_articles=10, hidden_channels=8).eval()
    c_emb, a_emb = torch.zeros(4, 8), torch.zeros(10, 8)
    a_emb[8, 0] = 3.0
    for c in range(4):
        c_emb[c, 0] = c_emb[c, c + 1] = 1.0
        a_emb[c + 4, c + 1], a_emb[c, c + 1] = 2.0, 1.0
    rows = np.repeat(np.arange(4), 2)
    cols = np.stack([np.arange(4), np.arange(4) + 4], 1).ravel()
    times = sp.csr_matrix((np.ones(8), (rows, cols)), shape=(4, 10))
    last = sp.csr_matrix((np.tile([2.0, 201.0], 4), (rows, cols)), shape=(4, 10))  # days since, plus one
    own = OwnEdges(times, last)
    truth = WindowTruth(np.arange(4), np.arange(4), np.arange(4))
    assert train.validation_map(model, c_emb, a_emb, truth) == pytest.approx(1 / 3)
    weights = train.fit_retrieval_head(model, c_emb, a_emb, truth, own)
    assert weights.shape == (5,) and torch.isfinite(weights).all()
    assert train.validation_map(model, c_emb, a_emb, truth, own=own.with_weights(weights)) == pytest.approx(1.0)
    assert weights[2] > 0  # the 7-day recency term carries it


def test_gnn_retrieval_adds_the_head_to_the_bought_pairs_in_units_of_the_spread(workdir):
    import polars as pl

    from hmgnn.models.gnn import own_edge_basis
    from hmgnn.ranking.candidates import GNNScores

    out = train.run(_cfg(workdir))
    checkpoint = load_checkpoint(out / "model.pt")
    head = checkpoint.retrieval_head
    assert head is None or (len(head) == 5 and "learned term" in (out / "README.md").read_text())
    history = pl.read_parquet(workdir / "split" / "history.parquet")
    n_c = pl.read_parquet(workdir / "tables" / "customers.parquet").height
    n_a = pl.read_parquet(workdir / "tables" / "articles.parquet").height
    inter = Interactions.from_frame(history, n_c, n_a)
    customer_x, article_x, _ = load_graph_features(workdir / "graph")
    checkpoint.retrieval_drops_bought, checkpoint.retrieval_head = False, [0.5, 0.0, 2.0, 0.0, 0.0]
    model = GNNRetrievalRecommender(checkpoint, customer_x, article_x).fit(inter)
    customer = int(history["customer_index"][0])
    bought = np.unique(history.filter(pl.col("customer_index") == customer)["article_index"].to_numpy())
    plain = GNNScores(model.model, model.customer_emb, model.article_emb, model.device)
    warm = np.unique(inter.customer_index)
    spread = float(plain.moments(warm)[1].mean())  # the head unit: the mean spread over buying customers
    lifted = model.gnn.dense(np.array([customer]))[0] - plain.dense(np.array([customer]))[0]
    assert set(np.flatnonzero(lifted.abs().numpy() > 1e-6).tolist()) == set(bought.tolist())
    days = inter.days_before(inter.last_day)
    article = int(bought[0])
    mine = (inter.customer_index == customer) & (inter.article_index == article)
    basis = own_edge_basis(torch.tensor([float(mine.sum())]), torch.tensor([float(days[mine].min())]))[0]
    expected = spread * float(basis @ torch.tensor([0.5, 0.0, 2.0, 0.0, 0.0]))
    assert float(lifted[article]) == pytest.approx(expected, rel=1e-4)
    checkpoint.retrieval_head = None
    assert GNNRetrievalRecommender(checkpoint, customer_x, article_x).fit(inter).gnn.own is None


def test_target_span_reaches_back_until_enough_targets():
    days = np.repeat(np.arange(100), 10)  # 10 purchases on each of the last 100 days
    assert train.target_span(days, 28, 0) == 28  # off
    assert train.target_span(days, 28, 200) == 28  # 280 purchases already
    assert train.target_span(days, 28, 400) == 40  # whole days: the 40 newest days hold 400
    assert train.target_span(days, 28, 405) == 41  # a day is never split: 410 purchases
    assert train.target_span(days, 28, 10_000) == 50  # at most the newest half of the purchases
    assert int((days < train.target_span(days, 28, 10_000)).sum()) == 500
    assert train.target_span(np.array([5]), 3, 100) == 3  # a single purchase: nothing to stretch


def test_device_auto_is_cuda_only_where_there_is_one_and_cuda_needs_one(monkeypatch):
    from hmgnn.device import resolve_device
    from hmgnn.errors import ConfigError

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert resolve_device("auto") == resolve_device("cpu") == torch.device("cpu")
    assert resolve_device("cuda", strict=False) == torch.device("cpu")  # ranking with a model trained on a GPU
    with pytest.raises(ConfigError, match="no CUDA device is available"):
        resolve_device("cuda")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    assert resolve_device("auto") == resolve_device("cuda") == torch.device("cuda")


def test_ranker_capacity_follows_the_labelled_customers():
    from hmgnn.ranking.fit import capacity

    sizes = [capacity(n) for n in (1, 90, 200, 400, 800, 20_000, 10**7)]
    assert sizes[0] == sizes[1] == 4 and sizes[-2] == sizes[-1] == 31
    assert sizes == sorted(sizes)  # never fewer leaves for more customers


@pytest.mark.parametrize("objective", ["lambdarank", "binary"])
def test_early_stopping_keeps_the_best_round_of_the_held_out_customers(objective):
    from hmgnn.ranking.ranker import Ranker

    # the label is the first feature's sign: a few trees learn it, and more only fit the noise of the others
    rng = np.random.default_rng(0)
    x = rng.normal(size=(4000, 5)).astype(np.float32)
    y = (x[:, 0] + 0.1 * rng.normal(size=4000) > 0.8).astype(np.float32)
    groups = np.full(400, 10)
    held = (x[3000:], y[3000:], groups[:100])
    stopped = Ranker.fit(x[:3000], y[:3000], groups[:300], list("abcde"), objective, trees=300, leaves=4, valid=held,
                         patience=10)
    full = Ranker.fit(x[:3000], y[:3000], groups[:300], list("abcde"), objective, trees=300, leaves=4)
    assert 1 <= stopped.trees < 300 and full.trees == 300
    assert list(stopped.importance())[0] == "a"


def test_auto_keeps_the_gnn_unless_a_baseline_ranks_the_held_out_customers_better():
    from hmgnn.ranking.fit import auto_choice

    maps = {"gnn": 0.20, "ranker-only": 0.30, "popular": 0.10, "popular-new": 0.05, "repurchase": 0.15, "trending": 0.12}
    assert auto_choice(maps) == "gnn"  # ranker-only is no choice for auto: only the gnn or a baseline
    assert auto_choice(maps | {"gnn": 0.15}) == "gnn"  # a tie keeps the gnn
    assert auto_choice(maps | {"gnn": 0.14}) == "repurchase"
    assert auto_choice(maps | {"gnn": 0.0, "trending": 0.15}) == "repurchase"  # ties among baselines: listed first


def test_held_out_customers_compare_the_models_and_choose_auto(workdir, tmp_path):
    from hmgnn.registry import resolve_model_name

    out = train.run(_cfg(workdir, "ranker.holdout=0.3", "ranker.trees=40", "ranker.patience=5"), out=tmp_path / "model")
    manifest = json.loads((out / "manifest.json").read_text())
    v = manifest["ranker"]["validation"]
    maps = v["map@12"]
    assert set(maps) == {"gnn", "ranker-only", "popular", "popular-new", "repurchase", "trending"}
    held = sum(w["held_out_customers"] for w in manifest["ranker"]["windows"])
    assert v["customers"] == held > 0
    best = max(("popular", "popular-new", "repurchase", "trending"), key=lambda n: maps[n])
    assert v["best_baseline"] == best and manifest["auto"] == v["auto"] == ("gnn" if maps["gnn"] >= maps[best] else best)
    assert v["gnn_vs_ranker_only"] == pytest.approx(maps["gnn"] / maps["ranker-only"], abs=1e-3)
    assert v["gnn_vs_ranker_only_ci95"][0] <= v["gnn_vs_ranker_only"] <= v["gnn_vs_ranker_only_ci95"][1]
    from hmgnn.ranking.fit import capacity

    assert manifest["ranker"]["trees"] <= 40 and manifest["ranker"]["leaves"] == capacity(manifest["ranker"]["groups"])
    card = (out / "README.md").read_text()
    assert "held-out label customers" in card and "The GNN's contribution: gnn / ranker-only" in card
    assert resolve_model_name("auto", out) == v["auto"]  # the model folder answers with train's choice


def test_auto_answers_with_the_baseline_that_won_and_says_so(trained_workdir, tmp_path, capsys):
    import shutil

    from hmgnn.cli import main

    wd = tmp_path / "wd"
    shutil.copytree(trained_workdir, wd, symlinks=True)
    manifest_path = wd / "model" / "manifest.json"
    manifest = json.loads(manifest_path.read_text())
    manifest_path.write_text(json.dumps(manifest | {"auto": "repurchase"}))  # as train writes where repurchase won
    customer = pl.read_parquet(wd / "tables" / "customers.parquet")["customer_id"][0]
    capsys.readouterr()
    for model in ("auto", "repurchase"):
        main(["recommend", "-w", str(wd), "--set", "graph.text_dim=4", "--customer-id", customer, "--json",
              "--model", model])
    out, err = capsys.readouterr()
    answers = [json.loads(part) for part in out.replace("}\n{", "}\x00{").split("\x00")]
    assert answers[0]["model"] == "repurchase" and answers[0]["recommendations"] == answers[1]["recommendations"]
    assert "answering with repurchase" in " ".join(err.split())


def test_temporal_variant_weighs_recent_purchases_more_in_message_passing():
    from hmgnn.models.node_inputs import build_adjacency

    day = np.datetime64("2020-09-29", "D")
    # customer 0 bought article 0 today and 14 days ago, article 1 28 days ago
    inter = Interactions(np.array([0, 0, 0], np.int32), np.array([0, 0, 1], np.int32),
                         np.array([day, day - 14, day - 28]), 1, 2)
    articles = torch.eye(2)
    plain = build_adjacency(inter).customer_mean(articles)
    assert torch.allclose(plain, torch.tensor([[2 / 3, 1 / 3]]))  # by purchase count
    decayed = build_adjacency(inter, as_of=dt.date(2020, 9, 29), half_life=14.0).customer_mean(articles)
    assert torch.allclose(decayed, torch.tensor([[1.5 / 1.75, 0.25 / 1.75]]))  # 1 + 1/2 against 1/4
    with pytest.raises(ValueError, match="as-of day"):
        build_adjacency(inter, half_life=14.0)


def test_temporal_variant_trains_and_recommends_with_its_decay(workdir, tmp_path):
    out = train.run(_cfg(workdir, "train.edge_half_life=30"), out=tmp_path / "model")
    ckpt = torch.load(out / "model.pt", weights_only=True)
    assert ckpt["train_config"]["edge_half_life"] == 30.0


def test_walk_negatives_end_three_steps_from_the_customer():
    from hmgnn.train import WalkSampler

    # customer 0 bought article 0; customer 1 bought articles 0 and 1; customer 2 bought article 2; customer 3 none
    counts = sp.csr_matrix((np.ones(4), ([0, 1, 1, 2], [0, 0, 1, 2])), shape=(4, 4))
    walk = WalkSampler(counts)
    g = torch.Generator().manual_seed(0)
    ends = walk.sample(torch.tensor([0] * 200 + [2] * 50), g)
    assert set(ends[:200].tolist()) == {0, 1}  # 0 -> article 0 -> customers 0 or 1 -> their articles
    assert set(ends[200:].tolist()) == {2}  # 2 -> 2 -> 2 -> 2
    lone = walk.sample(torch.tensor([3] * 100), g)  # no purchases: uniform articles
    assert len(set(lone.tolist())) > 1
    # walk-new: a walk that ends at the customer's own article gives a uniform one instead (same random draws)
    new = WalkSampler(counts, new_only=True)
    g1, g2 = torch.Generator().manual_seed(1), torch.Generator().manual_seed(1)
    who = torch.tensor([0] * 400)
    anywhere, unbought = walk.sample(who, g1), new.sample(who, g2)
    assert torch.equal(unbought[anywhere == 1], anywhere[anywhere == 1])  # article 1 is new to customer 0: kept
    assert (anywhere == 0).any() and len(set(unbought[anywhere == 0].tolist())) > 1  # own article 0: uniform


def test_walk_negatives_train(workdir, tmp_path):
    out = train.run(_cfg(workdir, "train.negatives=walk"), out=tmp_path / "model")
    assert torch.load(out / "model.pt", weights_only=True)["train_config"]["negatives"] == "walk"


def test_ranker_only_is_the_same_whatever_the_gnn(trained_workdir, tmp_path):
    # the ablation is paired: another GNN changes the gnn's ranker, never the ranker fit without it
    other = train.run(_cfg(trained_workdir, "train.lr=0.05", "train.hidden=8"), out=tmp_path / "model")
    first = torch.load(trained_workdir / "model" / "model.pt", weights_only=True)
    second = torch.load(other / "model.pt", weights_only=True)
    assert first["ranker_only"]["model_text"] == second["ranker_only"]["model_text"]
    assert first["ranker"]["model_text"] != second["ranker"]["model_text"]
    assert not set(first["ranker_only"]["features"]) & {"from_gnn", "gnn_score", "gnn_recent_max"}


def test_own_edge_term_trains_and_the_gnn_alone_ranks_with_it(workdir, tmp_path):
    # the own-edge variant learns weights for the pairs bought before; the GNN alone adds the term to exactly those
    # pairs, while the two-stage model's ranker reads the embeddings' scores only
    import polars as pl

    from hmgnn import portable
    from hmgnn.ranking.recommender import GNNRecommender

    out = train.run(_cfg(workdir, "train.own_edges=true"), out=tmp_path / "model")
    checkpoint = load_checkpoint(out / "model.pt")
    assert checkpoint.model_args["own_edges"] is True
    weights = checkpoint.state_dict["own.weight"]
    assert weights.shape == (1, 5) and weights.abs().sum() > 0  # it moved from its zero start
    history = pl.read_parquet(workdir / "split" / "history.parquet")
    n_c = pl.read_parquet(workdir / "tables" / "customers.parquet").height
    n_a = pl.read_parquet(workdir / "tables" / "articles.parquet").height
    seen = Interactions.from_frame(history, n_c, n_a)
    cx, ax = portable.read_features(out, checkpoint.files, checkpoint.model_args)
    alone = GNNRetrievalRecommender(checkpoint, cx, ax).fit(seen)
    customer = int(history["customer_index"][0])
    bought = np.unique(history.filter(pl.col("customer_index") == customer)["article_index"].to_numpy())
    with_term = alone.gnn.dense(np.array([customer]))[0]
    plain = alone.model.score_all(alone.customer_emb, alone.article_emb, torch.tensor([customer]))[0]
    changed = np.flatnonzero((with_term - plain).abs().numpy() > 1e-6)
    assert len(changed) and set(changed.tolist()) <= set(bought.tolist())
    assert GNNRecommender(checkpoint, cx, ax).fit(seen).gnn.own is None  # the ranker's GNN scores: embeddings only


def test_new_targets_keep_only_articles_new_to_the_customer(workdir):
    # train.targets = new: the GNN's targets are the supervision purchases whose pair is not in the message-passing
    # purchases; every other target stays
    from hmgnn.interactions import purchase_matrix
    from hmgnn.models.base import lookup

    data = train.load_training_data(workdir / "graph", workdir / "split", workdir / "tables")
    every = train.Trainer(_cfg(workdir).train, 42, data, torch.device("cpu"))
    new = train.Trainer(_cfg(workdir, "train.targets=new").train, 42, data, torch.device("cpu"))
    hist = every.train_history
    target = hist.days_before(every.train_end) < every.target_days
    before = purchase_matrix(hist, where=~target)

    def pairs(trainer):
        return set(zip(trainer._fixed.customers.tolist(), trainer._fixed.articles.tolist()))

    c, a = hist.customer_index[target].astype(np.int64), hist.article_index[target].astype(np.int64)
    repeat = lookup(before, c, a) > 0
    assert repeat.any() and (~repeat).any(), "the fixture needs both kinds of target purchases"
    assert len(pairs(new)) < len(pairs(every))
    assert pairs(new) == set(zip(c[~repeat].tolist(), a[~repeat].tolist()))
    # early stopping judges the ranking of the articles new to each customer
    assert new.validate() == new.validate(drop_bought=True)
    assert every.validate() == every.validate(drop_bought=False)
    own = train.Trainer(_cfg(workdir, "train.own_edges=true").train, 42, data, torch.device("cpu"))
    assert own.validate() == own.validate(drop_bought=False)  # the own-edge term ranks the bought articles

"""`hmgnn train`: a tiny run end to end, determinism, resume after a kill, and the GNN behind the interface."""

from __future__ import annotations

import datetime as dt
import json
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from hmgnn import train
from hmgnn.config import load_config
from hmgnn.models import create_model
from hmgnn.models.base import Interactions

sys.path.insert(0, str(Path(__file__).parent))
from tables_fixture import FAST_TRAIN as FAST, make_split_workdir  # noqa: E402



@pytest.fixture(scope="module")
def workdir(tmp_path_factory) -> Path:
    wd = make_split_workdir(tmp_path_factory.mktemp("train"))
    return wd


def _cfg(wd: Path, *extra: str):
    return load_config(None, FAST + list(extra), workdir=wd)


def _state(path: Path) -> dict[str, torch.Tensor]:
    return torch.load(path / "model.pt", weights_only=False)["state_dict"]


def test_train_writes_a_self_describing_checkpoint(workdir):
    out = train.run(_cfg(workdir))
    assert {"model.pt", "train_log.csv", "train_curve.png", "manifest.json", "blend_grid.json"} <= {p.name for p in out.iterdir()}
    ckpt = torch.load(out / "model.pt", weights_only=False)
    assert {"state_dict", "model_args", "feature_names", "graph_fingerprint", "config", "blend"} <= set(ckpt)
    assert ckpt["model_args"]["hidden_channels"] == 16
    log = (out / "train_log.csv").read_text().splitlines()
    assert log[0].startswith("epoch,loss,val_map@12") and len(log) == 4
    # up to date: a second run skips
    assert train.run(_cfg(workdir)) == out


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


def test_trained_gnn_scores_pairs_with_its_head(workdir):
    import polars as pl

    from hmgnn import pair_head
    from hmgnn.metrics import binary_metrics

    cfg = _cfg(workdir)
    out = train.run(cfg)
    head = torch.load(out / "model.pt", weights_only=False)["pair_head"]
    assert head["features"] == list(pair_head.FEATURES) and head["pairs"] > 0
    model = create_model("gnn", cfg)
    assert model.score_kind == "probability"
    history = pl.read_parquet(workdir / "split" / "history.parquet")
    model.fit(history, max(history["t_dat"]))
    pairs = pl.read_parquet(workdir / "split" / "validation_pairs.parquet").filter(
        pl.col("kind").is_in(["positive", "uniform"]))
    p = model.score(pairs["customer_index"].to_numpy(), pairs["article_index"].to_numpy())
    assert ((p > 0) & (p < 1)).all()
    # the pairs it was fit on: bought ones score above the uniform negatives
    assert binary_metrics(pairs["label"].to_numpy(), p)["auc"] > 0.7


def test_time_budget_ends_training_mid_epoch_with_a_model(workdir, tmp_path):
    import polars as pl

    full = train.run(_cfg(workdir, "train.batch_size=64", "train.epochs=1"), out=tmp_path / "full")
    steps = pl.read_csv(full / "train_log.csv")["steps"].to_list()
    assert steps[0] > 1
    # a budget spent by the first step: one step of epoch 1, validated, logged, and a complete model.pt
    out = train.run(_cfg(workdir, "train.batch_size=64", "train.max_minutes=1e-9"), out=tmp_path / "capped")
    log = pl.read_csv(out / "train_log.csv")
    assert log["epoch"].to_list() == [1] and log["steps"].to_list() == [1]
    checkpoint = torch.load(out / "model.pt", weights_only=False)
    assert checkpoint["best_epoch"] == 1 and checkpoint["blend"] is not None


@pytest.mark.parametrize("extra", [["train.loss=bce"], ["train.loss=softmax"], ["train.negatives=popularity"],
                                   ["train.decoder=mlp", "train.blend=false"], ["train.time_features=false"]])
def test_variants_train(workdir, tmp_path, extra):
    out = train.run(_cfg(workdir, *extra), out=tmp_path / "m")
    assert (out / "model.pt").exists()


def test_reference_recipe_goes_to_its_own_folder(workdir):
    cfg = _cfg(workdir, "train.recipe=reference")
    out = train.run(cfg)
    assert out == workdir / "reference"
    args = torch.load(out / "model.pt", weights_only=False)["model_args"]
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


def _interactions(pairs: list[tuple[int, int]], n_customers: int = 3, n_articles: int = 5) -> Interactions:
    c, a = (np.array(x, np.int32) for x in zip(*pairs))
    return Interactions(c, a, np.full(len(c), np.datetime64("2020-09-01"), "datetime64[D]"), n_customers, n_articles)


def test_variant_matrix_spreads_a_product_to_its_colours():
    # articles 0, 1, 2 are colours of product 0; 3 and 4 are products 1 and 2
    product = np.array([0, 0, 0, 1, 2], np.int32)
    variant = train.variant_matrix(_interactions([(0, 1), (0, 1), (1, 3)]), product).toarray()
    assert np.allclose(variant[0], np.log1p([2, 2, 2, 0, 0]))  # bought colour 1 twice: every colour of it
    assert np.allclose(variant[1], np.log1p([0, 0, 0, 1, 0]))  # a one-colour product: only itself
    assert not variant[2].any()  # bought nothing


def _blend(**weights) -> dict:
    return {"repurchase_half_life": 0.0, "popularity_weight": 0.0, "repurchase_weight": None, "variant_weight": 0.0,
            **weights}


def test_blend_variant_term_lifts_other_colours_and_drop_still_wins():
    product = np.array([0, 0, 0, 1, 2], np.int32)
    signals = train.BlendSignals.of(_interactions([(0, 1)]), dt.date(2020, 9, 8), [0.0], product)
    gnn = torch.tensor([[0.0, 0.0, 0.0, 1.0, 0.5]])
    plain = train.blended_scores(gnn.clone(), np.array([0]), signals, _blend())
    lifted = train.blended_scores(gnn.clone(), np.array([0]), signals, _blend(variant_weight=10.0))
    assert plain[0, 1] == lifted[0, 1] == float("-inf")  # dropped: already bought
    assert torch.argmax(plain[0]) == 3 and torch.argmax(lifted[0]) in (0, 2)  # other colours now first
    assert torch.allclose(lifted[0, [0, 2]] - plain[0, [0, 2]], torch.full((2,), 10.0 * float(np.log1p(1.0))))


def test_blend_segments_weigh_each_customer_by_their_own_segment():
    # customer 0 bought article 1 once, customer 1 bought articles 0..3: segments at 0, 1 and 3 purchases
    signals = train.BlendSignals.of(_interactions([(0, 1), (1, 0), (1, 1), (1, 2), (1, 3)]),
                                    dt.date(2020, 9, 8), [0.0])
    blend = {**_blend(), "segments": [{"min_purchases": 0, **_blend()},
                                      {"min_purchases": 1, **_blend(repurchase_weight=100.0)},
                                      {"min_purchases": 3, **_blend(popularity_weight=1.0)}]}
    gnn = torch.tensor([[0.0, 0.0, 0.0, 0.0, 1.0]] * 3)
    scores = train.blended_scores(gnn.clone(), np.array([0, 1, 2]), signals, blend)
    assert torch.argmax(scores[0]) == 1  # one purchase: own purchase first
    assert torch.isinf(scores[1, :4]).all() and torch.argmax(scores[1]) == 4  # heavy: bought dropped
    assert torch.equal(scores[2], train.zscore(gnn[2:3])[0])  # nothing bought, segment 0: the GNN alone
    # the same customers one at a time give the same rows (serving scores one customer per request)
    for i in range(3):
        assert torch.equal(train.blended_scores(gnn[i:i + 1].clone(), np.array([i]), signals, blend)[0], scores[i])


def test_fit_blend_records_the_variant_weight(workdir):
    ckpt = torch.load(train.run(_cfg(workdir)) / "model.pt", weights_only=False)
    assert "variant_weight" in ckpt["blend"] and len(ckpt["article_product"]) == ckpt["model_args"]["num_articles"]
    segments = ckpt["blend"]["segments"]
    assert [g["min_purchases"] for g in segments] == list(train.HISTORY_SEGMENTS)
    assert ckpt["blend"]["validation_map@12"] >= ckpt["blend"]["one_setting_map@12"] - 1e-12


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


def test_walk_term_is_rp3beta_scaled_by_each_customers_std():
    pairs = [(0, 0), (0, 1), (1, 1), (1, 2), (2, 2), (2, 3), (3, 0), (3, 3), (3, 4), (0, 1)]  # a repeat counts once
    inter = _interactions(pairs, n_customers=5, n_articles=6)
    dense = np.zeros((5, 6))
    for c, a in pairs:
        dense[c, a] = 1
    want = _rp3(dense, 0.5)
    walk = train.WalkTerm(inter, beta=0.5, neighbours=100)
    r, c, v = walk.entries(np.array([3, 0, 4]))
    got = np.zeros((3, 6))
    got[r, c] = v
    for row, customer in enumerate([3, 0]):
        assert np.allclose(got[row], want[customer] / want[customer].std(), atol=1e-5)
    assert not got[2].any()  # no purchases: no walk
    assert (got[:, 5] == 0).all()  # nobody bought article 5: unreachable


def test_walk_term_keeps_each_articles_strongest_neighbours():
    import scipy.sparse as sp

    block = train._top_per_row(sp.csr_matrix(
        np.array([[0.1, 0.5, 0.0, 0.3], [0.2, 0.2, 0.2, 0.0], [0.0, 0.0, 0.0, 0.9]], np.float32)), 2)
    assert np.allclose(block.toarray(), [[0, 0.5, 0, 0.3], [0.2, 0.2, 0, 0], [0, 0, 0, 0.9]])  # ties: smaller column


def test_blend_walk_term_adds_its_weight_times_the_walk():
    inter = _interactions([(0, 0), (1, 0), (1, 1), (2, 1), (2, 2)], n_customers=3, n_articles=5)
    signals = train.BlendSignals.of(inter, dt.date(2020, 9, 8), [0.0], walk=True)
    gnn = torch.zeros(1, 5)
    gnn[0, 4] = 1.0
    plain = train.blended_scores(gnn.clone(), np.array([0]), signals, _blend())
    walked = train.blended_scores(gnn.clone(), np.array([0]), signals, _blend(walk_weight=10.0))
    r, c, v = signals.walk.entries(np.array([0]))
    extra = torch.zeros(5)
    extra[torch.from_numpy(c)] = 10.0 * torch.from_numpy(v)
    keep = torch.isfinite(plain[0])
    assert torch.allclose(walked[0][keep], plain[0][keep] + extra[keep])
    assert walked[0, 0] == float("-inf") and torch.argmax(walked[0]) == 1  # bought dropped; co-bought article 1 first


def test_fit_blend_searches_the_walk_weight_when_asked(workdir, tmp_path):
    ckpt = torch.load(train.run(_cfg(workdir, "train.walk=true"), out=tmp_path / "walk") / "model.pt",
                      weights_only=False)
    grid = json.loads((tmp_path / "walk" / "blend_grid.json").read_text())
    assert {g["walk_weight"] for g in grid} == set(train.WALK_WEIGHTS)
    assert all("walk_weight" in g for g in ckpt["blend"]["segments"])
    # a served model whose blend weighs the walk builds the term and ranks alike one customer at a time or many
    from hmgnn.models.gnn_recommender import GNNRecommender

    for g in ckpt["blend"]["segments"]:
        g["walk_weight"] = 1.0
    data = train.load_training_data(workdir / "graph", workdir / "split", workdir / "tables")
    model = GNNRecommender(ckpt, data.customer_x, data.article_x).fit(data.history, data.history_end)
    assert model.signals.walk is not None
    customers = np.unique(data.history.customer_index)[:6]
    many, _ = model.recommend(customers, k=12)
    for i, c in enumerate(customers):
        assert np.array_equal(model.recommend(int(c), k=12)[0], many[i])


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
    only_new = train._subset(data.validation, ~seen[data.validation.customer_index])
    with pytest.raises(InputError, match="sample.cutoff"):
        train.Trainer(cfg.train, cfg.seed, dataclasses.replace(data, validation=only_new), torch.device("cpu"))

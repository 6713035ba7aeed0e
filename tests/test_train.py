"""`hmgnn train`: a tiny run end to end, determinism, resume after a kill, and the GNN behind the interface."""

from __future__ import annotations

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

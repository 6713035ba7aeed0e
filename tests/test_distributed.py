"""Data-parallel `hmgnn train` (torchrun, gloo on CPU) against single-process training.

The end-to-end test launches `python -m torch.distributed.run --standalone --nproc-per-node 2 -m hmgnn.cli train`
on a tiny workdir and compares the model it writes with the model one process writes. The in-process tests check
the arithmetic that makes the two agree: the ranks' shares of a batch's loss add up to the single-process loss,
and their gradients to its gradient, for every loss, for uneven shards and for ranks left without rows.

Why the comparison needs a tolerance, and which: the ranks sum their gradients in a different order than one
process does (each rank reduces its shard's contributions, then the all-reduce adds the ranks), so gradients
differ by float32 rounding, ~1e-7 relative. Adam divides each step by the root of the running squared gradient,
so a step moves a parameter by about `lr` (1e-2 here) whatever the gradient's scale, and a rounding difference
moves it by ~1e-7 of that, except where a gradient is a near-total cancellation of larger terms (a weight of a
feature only 6 articles have, say): there the relative rounding error, and so the step difference, grow.
Measured on this workdir (2 ranks, 3 epochs, 6 steps): the largest parameter difference is 1.9e-5 (that one
rare-feature weight; the next largest is 7e-7) and the largest centred score difference 1.8e-5; the slow
variants reach 5.7e-5 (softmax over 3 ranks). PARAM_ATOL = SCORE_ATOL = 5e-4, 5% of one Adam step, leaves 25x
room over the fast test's drift and sits 50-100x below what a real sharding mistake does: weighing shards by
row count instead of by recency weight moves parameters by up to 3.1e-2 and centred scores by 5.8e-2; dropping
the all-reduce is stopped at the first validation by the ranks' in-step check. Adam is blind to a constant
gradient scale, so the per-epoch losses (summed over the ranks) are compared too (rtol 1e-5): a share scaled
wrong shows there. The validation MAP@12 of every epoch must agree to 1e-6: the same top-12 lists.

One parameter is exempt from the element-wise comparison: with the dot decoder, bpr and softmax compare one
customer's scores of different articles, so the last layer's article bias b (which adds c.b to every score of
customer c) cancels out of the loss; its gradient is pure rounding noise (~1e-9), which Adam turns into
lr-sized steps of arbitrary sign, in one process as in two. It cannot change any ranking, so for it (and for
the model as a whole) the test compares the scores each model gives, centred per customer.
"""

from __future__ import annotations

import copy
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import polars as pl
import pytest
import torch
import torch.distributed as dist

from hmgnn import train
from hmgnn.config import TrainConfig, load_config
from hmgnn.distributed import Distributed
from hmgnn.errors import ConfigError
from hmgnn.models.gnn import HeteroSAGE

from tables_fixture import FAST_TRAIN

pytestmark = pytest.mark.skipif(not (dist.is_available() and dist.is_gloo_available()),
                                reason="this torch build has no torch.distributed with the gloo backend")

PARAM_ATOL = 5e-4   # per parameter, after the whole run: 5% of one Adam step (lr 1e-2); see the module docstring
SCORE_ATOL = 5e-4   # per (customer, article) score, centred per customer; scores are O(1)
LOSS_RTOL = 1e-5    # per-epoch training loss, summed over the ranks
MAP_ATOL = 1e-6     # validation MAP@12 per epoch: the same top-12 lists give the same MAP


@pytest.fixture(scope="module")
def workdir(split_workdir) -> Path:
    return split_workdir


def _cfg(wd: Path, *extra: str):
    return load_config(None, FAST_TRAIN + list(extra), workdir=wd)


def _data(wd: Path) -> train.TrainingData:
    return train.load_training_data(wd / "graph", wd / "split", wd / "tables")


def _n_targets(wd: Path, target_days: int = 28) -> int:
    """Supervision positives per epoch with the default `recent` supervision."""
    data = _data(wd)
    days = data.history.days_before(data.history_end)
    return int((days < train.target_span(days, target_days, TrainConfig().min_targets)).sum())


def _torchrun(wd: Path, out: Path, extra: list[str], nproc: int = 2) -> subprocess.Popen:
    """Start `hmgnn train` on `nproc` processes (the caller trains single-process meanwhile)."""
    env = {k: v for k, v in os.environ.items()
           if k not in ("WORLD_SIZE", "RANK", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT")}
    env["OMP_NUM_THREADS"] = "1"  # 2 ranks on a 2-core machine: no oversubscription
    sets = [arg for item in FAST_TRAIN + extra for arg in ("--set", item)]
    # --standalone: a local rendezvous on a free port, so parallel test runs do not collide
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc-per-node={nproc}",
           "-m", "hmgnn.cli", "train", "-w", str(wd), "--out", str(out), "--set", "train.device=cpu", *sets]
    return subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def _gauge(ckpt: dict) -> set[str]:
    """Parameters the loss cannot see (see the module docstring)."""
    args, tc = ckpt["model_args"], ckpt["train_config"]
    if args["decoder"] == "dot" and tc["loss"] in ("bpr", "softmax"):
        return {f"convs.{args['num_layers'] - 1}.article.lin_l.bias"}
    return set()


@torch.no_grad()
def _centred_scores(wd: Path, cfg, state: dict[str, torch.Tensor]) -> torch.Tensor:
    trainer = train.Trainer(cfg.train.resolved(), cfg.seed, _data(wd), torch.device("cpu"))
    trainer.model.load_state_dict(state)
    c_emb, a_emb = trainer.embeddings_for_validation()
    scores = trainer.model.score_all(c_emb, a_emb)
    return scores - scores.mean(dim=1, keepdim=True)


def _compare(wd: Path, cfg, one: Path, many: Path) -> dict[str, float]:
    """Assert the two runs agree (module docstring); return the largest differences seen."""
    a = torch.load(one / "model.pt", weights_only=True)
    b = torch.load(many / "model.pt", weights_only=True)
    log_a, log_b = pl.read_csv(one / "train_log.csv"), pl.read_csv(many / "train_log.csv")
    assert log_a["epoch"].to_list() == log_b["epoch"].to_list()
    np.testing.assert_allclose(log_b["val_map@12"].to_numpy(), log_a["val_map@12"].to_numpy(), rtol=0, atol=MAP_ATOL)
    np.testing.assert_allclose(log_b["loss"].to_numpy(), log_a["loss"].to_numpy(), rtol=LOSS_RTOL)
    assert a["best_epoch"] == b["best_epoch"] and (a["ranker"] is None) == (b["ranker"] is None)
    gauge = _gauge(a)
    diffs = {k: float((v - b["state_dict"][k]).abs().max()) for k, v in a["state_dict"].items()}
    worst = max(d for k, d in diffs.items() if k not in gauge)
    assert worst <= PARAM_ATOL, {k: d for k, d in diffs.items() if d > PARAM_ATOL}
    scores_a, scores_b = _centred_scores(wd, cfg, a["state_dict"]), _centred_scores(wd, cfg, b["state_dict"])
    score_diff = float((scores_a - scores_b).abs().max())
    assert score_diff <= SCORE_ATOL
    return {"param": worst, "score": score_diff}


def _finish(proc: subprocess.Popen, out: Path) -> str:
    """Wait for a torchrun launch and check what it left behind; returns its stderr."""
    try:
        stdout, stderr = proc.communicate(timeout=300)
    except subprocess.TimeoutExpired:
        proc.kill()
        raise
    assert proc.returncode == 0, stdout[-3000:] + stderr[-3000:]
    assert {"model.pt", "train_log.csv", "manifest.json"} <= {p.name for p in out.iterdir()}
    assert not (out.parent / f".{out.name}.partial").exists()  # rank 0 cleaned up its resumable state
    assert sorted(p.name for p in out.parent.iterdir() if p.name.startswith(".")) == []  # no stray rank output
    assert stderr.count("train wrote") == 1  # one rank speaks
    return stderr


def test_two_processes_match_one(workdir, tmp_path):
    # one batch of n-1 positives (shards of unequal length when n-1 is odd) and one of 1 positive (rank 0 gets
    # no rows): the two edge cases of sharding, in the real loop
    extra = [f"train.batch_size={_n_targets(workdir) - 1}"]
    cfg = _cfg(workdir, *extra)
    many = tmp_path / "many" / "model"
    many.parent.mkdir()
    proc = _torchrun(workdir, many, extra)
    one = train.run(cfg, out=tmp_path / "one" / "model")
    assert "data-parallel over 2 processes (gloo" in _finish(proc, many)
    diffs = _compare(workdir, cfg, one, many)
    # the same model as one process, within float tolerance of summing the ranks' gradients in another order
    assert diffs["param"] <= PARAM_ATOL and diffs["score"] <= SCORE_ATOL, diffs


@pytest.mark.slow
@pytest.mark.parametrize("nproc,extra", [
    (3, ["train.loss=softmax", "train.batch_size=500"]),
    (2, ["train.loss=bce", "train.negatives=popularity", "train.num_negatives=3", "train.batch_size=700"]),
    (2, ["train.supervision=disjoint", "train.dropout=0.3", "train.batch_size=600"]),
    (2, ["train.decoder=mlp", "train.batch_size=999"]),
    (2, ["train.recipe=reference", "train.batch_size=600"]),
])
def test_variants_match_one_process(workdir, tmp_path, nproc, extra):
    cfg = _cfg(workdir, *extra)
    many = tmp_path / "many" / "model"
    many.parent.mkdir()
    proc = _torchrun(workdir, many, extra, nproc)
    one = train.run(cfg, out=tmp_path / "one" / "model")
    _finish(proc, many)
    diffs = _compare(workdir, cfg, one, many)
    assert diffs["param"] <= PARAM_ATOL and diffs["score"] <= SCORE_ATOL, (nproc, extra, diffs)


# ---- in process: the ranks' shares add up to the single-process step ------------------------------------------

class _Stop(Exception):
    pass


class _Capture(Distributed):
    """A rank that records its gradient at the all-reduce of the first step, then stops the epoch."""

    def all_reduce_gradients(self, model: torch.nn.Module) -> None:
        self.grads = {k: (p.grad.clone() if p.grad is not None else torch.zeros_like(p))
                      for k, p in model.named_parameters()}
        raise _Stop

    def sum(self, value: float) -> float:
        return value


def _first_step(trainer: train.Trainer, initial: dict, rank: int, world: int) -> dict[str, torch.Tensor]:
    """Rank `rank` of `world`'s gradient in the first step of an epoch, from the state `initial`."""
    trainer.load_state(copy.deepcopy(initial))
    trainer.dist = capture = _Capture(rank, world)
    with pytest.raises(_Stop):
        trainer.train_epoch()
    return capture.grads


@pytest.mark.parametrize("loss", ["bpr", "bce", "softmax"])
@pytest.mark.parametrize("batch", [2, 500])
def test_rank_gradients_add_up_to_the_batch_gradient(workdir, loss, batch):
    # batch 2 over 3 ranks leaves rank 0 without rows; 500 over 3 gives shards of 166, 167 and 167
    cfg = _cfg(workdir, f"train.loss={loss}", f"train.batch_size={batch}", "train.num_negatives=3")
    trainer = train.Trainer(cfg.train.resolved(), cfg.seed, _data(workdir), torch.device("cpu"))
    initial = trainer.state("k")
    whole = _first_step(trainer, initial, 0, 1)
    parts = [_first_step(trainer, initial, r, 3) for r in range(3)]
    for name, g in whole.items():
        summed = sum(p[name] for p in parts)
        torch.testing.assert_close(summed, g, rtol=1e-5, atol=1e-7, msg=name)


@pytest.mark.parametrize("weighted", [False, True])
@pytest.mark.parametrize("kind", ["bpr", "bce", "softmax"])
def test_shares_add_up_to_the_batch_loss(kind, weighted):
    torch.manual_seed(0)
    model = HeteroSAGE(num_customers=9, num_articles=7, hidden_channels=4)
    c_emb = torch.randn(9, 4, requires_grad=True)
    a_emb = torch.randn(7, 4, requires_grad=True)
    n, k = 10, 3
    c, a = torch.randint(9, (n,)), torch.randint(7, (n,))
    neg = torch.randint(7, (n, k))
    w = torch.rand(n) + 0.1 if weighted else None

    def loss_of(rows: slice, world_batch_a: torch.Tensor) -> torch.Tensor:
        ws = w[rows] if w is not None else None
        if kind == "softmax":
            torch.manual_seed(1)  # every rank draws the same negatives from the whole batch (num_negatives < n)
            return model.sampled_softmax_loss(c_emb, a_emb, c[rows], a[rows], None, ws, num_negatives=4,
                                              negative_index=world_batch_a)
        pos = model.score(c_emb, a_emb, c[rows], a[rows])
        negs = model.decode(c_emb[c[rows]].unsqueeze(1), a_emb[neg[rows]])
        return model.bpr_loss(pos, negs, ws) if kind == "bpr" else model.bce_loss(pos, negs.reshape(-1), ws)

    whole = loss_of(slice(None), a)
    g_whole = torch.autograd.grad(whole, [c_emb, a_emb])
    for world in (2, 3, 12):  # 12 > n: ranks without rows
        ranks = [Distributed(r, world) for r in range(world)]
        shares = [d.share(loss_of(d.shard(n), a), d.shard(n), n, w, kind, k) for d in ranks]
        assert torch.isclose(sum(shares), whole, rtol=1e-6), (world, [float(s) for s in shares])
        grads = [torch.autograd.grad(s, [c_emb, a_emb]) for s in shares]
        for i in range(2):
            torch.testing.assert_close(sum(g[i] for g in grads), g_whole[i], rtol=1e-5, atol=1e-7)


def test_shards_cover_a_batch_once():
    for world in (1, 2, 3, 5):
        for n in range(0, 12):
            rows = []
            for r in range(world):
                start, end = Distributed(r, world)._bounds(n)
                rows += range(start, end)
            assert rows == list(range(n))


def test_softmax_negative_index_defaults_to_the_batch():
    torch.manual_seed(0)
    model = HeteroSAGE(num_customers=5, num_articles=6, hidden_channels=3)
    c_emb, a_emb = torch.randn(5, 3), torch.randn(6, 3)
    c, a = torch.randint(5, (8,)), torch.randint(6, (8,))
    torch.manual_seed(1)
    plain = model.sampled_softmax_loss(c_emb, a_emb, c, a, num_negatives=5)
    torch.manual_seed(1)
    explicit = model.sampled_softmax_loss(c_emb, a_emb, c, a, num_negatives=5, negative_index=a)
    assert torch.equal(plain, explicit)


def test_world_size_without_torchrun_is_a_config_error(workdir, tmp_path, monkeypatch):
    monkeypatch.setenv("WORLD_SIZE", "2")
    for name in ("RANK", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT"):
        monkeypatch.delenv(name, raising=False)
    with pytest.raises(ConfigError, match="torchrun"):
        train.run(_cfg(workdir), out=tmp_path / "m")

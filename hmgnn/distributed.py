"""Data-parallel `hmgnn train` under PyTorch's own launcher: `torchrun --nproc-per-node N hmgnn train ...`.

torchrun starts N copies of the command with WORLD_SIZE, RANK, LOCAL_RANK, MASTER_ADDR and MASTER_PORT set.
:func:`launched` (around :func:`hmgnn.train.run`) then joins them into one process group (gloo on CPU, NCCL
when training on CUDA, one GPU per process by LOCAL_RANK) and :func:`current` hands the trainer a
:class:`Distributed` that says which share of the work is this process's:

* every rank builds the same model from the same seed, draws the same epoch graph, the same batch order and the
  same negatives from the same generator, and runs the same full-graph message pass (each rank needs every
  node's embedding, so message passing is replicated, not split);
* each minibatch of supervision positives (and their negatives) is cut into N contiguous shards, rank r scores
  shard r and scales its loss by its share of the batch's loss denominator, so the **sum** of the N ranks'
  gradients is the gradient of the single-process loss on the whole batch;
* gradients are summed across ranks by hand, one flat all-reduce per step, before the identical Adam step on
  every rank. DistributedDataParallel is not used: it syncs gradients only for work done through the wrapped
  module's ``forward``, while a training step calls ``embeddings()``, ``score()``/``decode()`` and the static
  losses; wrapping would mean moving the step into a forward and renaming every checkpoint key ``module.*``.
  All parameters take part in every step, so one flat all-reduce is what DDP's buckets amount to here (without
  overlapping communication with the backward pass);
* rank 0 alone validates (the MAP@12 is broadcast so early stopping agrees), logs, draws the progress bar,
  writes the resumable state each epoch and the final model/ folder; the others wait at a barrier and exit.

So N ranks follow the single-process run up to float summation order. Without WORLD_SIZE > 1 nothing here runs
and training is exactly the single-process code path.
"""

from __future__ import annotations

import functools
import os
from dataclasses import dataclass, field
from typing import Any, Callable, TypeVar

import torch
import torch.distributed as dist

from hmgnn import artifacts
from hmgnn.console import console, info
from hmgnn.device import resolve_device
from hmgnn.errors import ConfigError

__all__ = ["Distributed", "current", "launched", "env_world_size"]

F = TypeVar("F", bound=Callable[..., Any])


def env_world_size() -> int:
    """WORLD_SIZE as torchrun sets it (1 when not launched by torchrun)."""
    try:
        return int(os.environ.get("WORLD_SIZE", "1"))
    except ValueError:
        raise ConfigError(f"WORLD_SIZE must be an integer, got {os.environ['WORLD_SIZE']!r}") from None


@dataclass
class Distributed:
    """This process's place in a data-parallel run; the default (rank 0 of 1) makes every method a no-op."""

    rank: int = 0
    world_size: int = 1
    device: torch.device = field(default_factory=lambda: torch.device("cpu"))
    """Where collective tensors live: the rank's GPU with NCCL, the CPU with gloo."""

    @property
    def enabled(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        """Rank 0: the one process that validates, logs and writes."""
        return self.rank == 0

    # ---- one training step -----------------------------------------------------------------------------------
    def _bounds(self, n: int) -> tuple[int, int]:
        return n * self.rank // self.world_size, n * (self.rank + 1) // self.world_size

    def shard(self, n: int) -> slice:
        """This rank's contiguous block of a batch of ``n`` rows (all of it on one process).

        A batch with fewer rows than ranks leaves some ranks without rows; they get row 0 as a placeholder
        (the losses are undefined over no rows) and :meth:`share` weighs it 0.
        """
        if not self.enabled:
            return slice(None)
        start, end = self._bounds(n)
        return slice(start, end) if end > start else slice(0, 1)

    def share(self, loss: torch.Tensor, mine: slice, n: int, weight: torch.Tensor | None, kind: str,
              num_negatives: int) -> torch.Tensor:
        """The loss of this rank's shard scaled by the shard's share of the whole batch's loss denominator.

        Each loss is a (weighted) mean ``sum(w * l) / sum(w)``; over the shard it is ``sum_shard(w * l) /
        sum_shard(w)``, so multiplying by ``sum_shard(w) / sum_batch(w)`` leaves the shard's part of the batch
        mean, and the ranks' parts add up to the single-process loss (and their gradients to its gradient).
        The denominators: bpr and softmax average over positives (weights, or 1 each); bce averages over
        positives (weight, or 1) and ``num_negatives`` negatives per positive (1 each).
        """
        if not self.enabled:
            return loss
        start, end = self._bounds(n)
        count = end - start
        if count == 0:
            return loss * 0.0  # the placeholder row of a rank without rows: zero loss, zero gradients
        if weight is None:
            part, whole = float(count), float(n)
        else:
            part, whole = float(weight[mine].double().sum()), float(weight.double().sum())
        if kind == "bce":
            part, whole = part + count * num_negatives, whole + n * num_negatives
        return loss * (part / whole)

    def all_reduce_gradients(self, model: torch.nn.Module) -> None:
        """Sum every parameter's gradient over the ranks (one flat all-reduce); a missing gradient counts as 0."""
        if not self.enabled:
            return
        params = [p for p in model.parameters() if p.requires_grad]
        flat = torch.cat([(p.grad if p.grad is not None else torch.zeros_like(p)).reshape(-1) for p in params])
        dist.all_reduce(flat, op=dist.ReduceOp.SUM)
        offset = 0
        for p in params:
            p.grad = flat[offset:offset + p.numel()].view_as(p)
            offset += p.numel()

    def sum(self, value: float) -> float:
        """``value`` summed over the ranks (e.g. each rank's share of an epoch's loss)."""
        if not self.enabled:
            return value
        t = torch.tensor([value], dtype=torch.float64, device=self.device)
        dist.all_reduce(t, op=dist.ReduceOp.SUM)
        return float(t.item())

    # ---- once per epoch ----------------------------------------------------------------------------------------
    def validate(self, trainer: Any) -> float:
        """``trainer.validate()`` on rank 0, broadcast, so every rank takes the same early-stopping decision."""
        if not self.enabled:
            return trainer.validate()
        self.check_in_sync(trainer)
        value = trainer.validate() if self.is_main else 0.0
        t = torch.tensor([value], dtype=torch.float64, device=self.device)
        dist.broadcast(t, src=0)
        return float(t.item())

    def check_in_sync(self, trainer: Any) -> None:
        """Raise unless every rank holds the same epoch, parameters and sampling state (a cheap fingerprint:
        two 6-number all-reduces; run before training and before each validation). Ranks that drift apart (a
        rank-dependent random draw, a rank that resumed from a different state file) would otherwise train
        silently different models."""
        if not self.enabled:
            return
        with torch.no_grad():
            params = [p.detach().double() for p in trainer.model.parameters()]
            generator = trainer.generator.get_state().double()
            torch_rng = torch.get_rng_state().double()  # dropout and the softmax loss's negatives (on CPU)
            fingerprint = torch.stack([
                torch.tensor(float(trainer.epoch), dtype=torch.float64),
                torch.stack([p.sum() for p in params]).sum().cpu(),
                torch.stack([p.abs().sum() for p in params]).sum().cpu(),
                generator.sum(), (generator * torch.arange(generator.numel(), dtype=torch.float64)).sum(),
                (torch_rng * torch.arange(torch_rng.numel(), dtype=torch.float64)).sum(),
            ]).nan_to_num().to(self.device)
        low, high = fingerprint.clone(), fingerprint.clone()
        dist.all_reduce(low, op=dist.ReduceOp.MIN)
        dist.all_reduce(high, op=dist.ReduceOp.MAX)
        if not torch.equal(low, high):
            raise RuntimeError(f"rank {self.rank}: the {self.world_size} training processes are out of step "
                               f"(epoch, parameter sums, generator state differ: min {low.tolist()}, "
                               f"max {high.tolist()}); were they started on the same workdir and config?")

    def load(self, path: Any) -> Any:
        """The state rank 0 saved (plain data only, see `artifacts.load_torch`); on GPUs its ``cuda:0`` tensors land on
        this rank's GPU."""
        if not self.enabled or self.device.type != "cuda":
            return artifacts.load_torch(path, artifacts.MODEL, map_location=None)
        gpus = {f"cuda:{i}": str(self.device) for i in range(torch.cuda.device_count())}
        return artifacts.load_torch(path, artifacts.MODEL, map_location=gpus)

    def barrier(self) -> None:
        if self.enabled:
            if self.device.type == "cuda":
                dist.barrier(device_ids=[self.device.index])
            else:
                dist.barrier()


_CURRENT = Distributed()


def current() -> Distributed:
    """The running process's :class:`Distributed` (rank 0 of 1 outside a torchrun launch)."""
    return _CURRENT


def _join(device: str) -> tuple[Distributed, bool]:
    """Join (or adopt) the process group torchrun's environment describes; returns it and whether we own it."""
    world = env_world_size()
    if not dist.is_available():
        raise ConfigError(f"WORLD_SIZE={world} but this torch build has no torch.distributed")
    missing = [k for k in ("RANK", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT") if k not in os.environ]
    if missing and not dist.is_initialized():
        raise ConfigError(f"WORLD_SIZE={world} but {', '.join(missing)} not set: launch with "
                          "`torchrun --nproc-per-node N hmgnn train ...`")
    kind = resolve_device(device).type
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    if kind == "cuda":  # (resolve_device has refused `cuda` without a CUDA device)
        if local_rank >= torch.cuda.device_count():
            raise ConfigError(f"LOCAL_RANK {local_rank} but only {torch.cuda.device_count()} CUDA devices: "
                              "use --nproc-per-node <= the number of GPUs (NCCL needs one GPU per process)")
        torch.cuda.set_device(local_rank)  # "cuda" now means this rank's GPU everywhere in train.py
        comm_device = torch.device("cuda", local_rank)
    else:
        comm_device = torch.device("cpu")
    owned = not dist.is_initialized()
    if owned:
        backend = "nccl" if kind == "cuda" else "gloo"
        if backend == "gloo" and not dist.is_gloo_available():
            raise ConfigError("training on several CPU processes needs torch.distributed's gloo backend")
        if backend == "nccl" and not dist.is_nccl_available():
            raise ConfigError("training on several GPUs needs torch.distributed's NCCL backend")
        dist.init_process_group(backend=backend)
    return Distributed(dist.get_rank(), dist.get_world_size(), comm_device), owned


def launched(fn: F) -> F:
    """Run a step function (first argument: the Config) as one rank of a torchrun launch when WORLD_SIZE > 1.

    Joins the process group, quiets the console on ranks other than 0, and on success waits for every rank at a
    barrier and destroys the group (if this call created it). On failure the exception propagates at once, with
    no barrier (the other ranks may be blocked in a collective; torchrun stops them when this one exits
    non-zero). WORLD_SIZE unset or 1: ``fn`` runs unchanged.
    """

    @functools.wraps(fn)
    def wrapper(cfg: Any, *args: Any, **kwargs: Any) -> Any:
        global _CURRENT
        if env_world_size() <= 1 or _CURRENT.enabled:
            return fn(cfg, *args, **kwargs)
        ctx, owned = _join(cfg.train.resolved().device)
        # ranks other than 0 stay quiet for good: they are torchrun workers, and the CLI's "wrote ..." is rank 0's
        _CURRENT, console.quiet = ctx, console.quiet or not ctx.is_main
        info(f"[green]train[/green]: data-parallel over {ctx.world_size} processes "
             f"({dist.get_backend()}, rank 0 validates and writes)")
        try:
            result = fn(cfg, *args, **kwargs)
            ctx.barrier()  # the other ranks return once rank 0 has written the output
        finally:
            _CURRENT = Distributed()
        if owned:
            dist.destroy_process_group()
        return result

    return wrapper  # type: ignore[return-value]

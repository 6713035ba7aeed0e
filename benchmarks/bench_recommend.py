"""Benchmark of `recommend` at full Kaggle shape: every customer written as a submission, and one in-process call.

Run: python benchmarks/bench_recommend.py [--model trending] [--purchases 3000000]. Prints figures, asserts nothing.

With a trained workdir (`--workdir work/full -c configs/full.toml --model gnn --sample 20480`) it fits that model
as `hmgnn recommend` does, ranks a seeded sample of its customers in `recommend.batch_size` batches, projects the
time of `recommend --all` from the rate, and for the two-stage `gnn` splits the time between candidate generation,
pair features and the ranker's prediction. The sample goes through `write_recommendations`, the code of
`hmgnn recommend --all` (its batches side by side in threads).
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import tempfile
import time
from pathlib import Path

import numpy as np

import torch

from hmgnn.interactions import Interactions
from hmgnn.models import Recommender
from hmgnn.registry import create_model
from hmgnn.models.base import PARALLEL_BATCHES
from hmgnn.recommend import write_recommendations


class RandomDot(Recommender):
    """Dense scores from random 64-d embeddings: times the path a GNN takes (score_all + exact top-k)."""

    score_kind = "logit"

    def _fit(self, interactions: Interactions, as_of: dt.date) -> None:
        g = torch.Generator().manual_seed(0)
        self.customer = torch.randn(interactions.n_customers, 64, generator=g)
        self.article = torch.randn(interactions.n_articles, 64, generator=g)

    def score_all(self, customer_indices: np.ndarray) -> torch.Tensor:
        return self.customer[torch.as_tensor(customer_indices)] @ self.article.T


def random_case(customers: int, articles: int, purchases: int, days: int, seed: int) -> Interactions:
    """Kaggle-shaped random purchases: log-normal activity and article popularity (skewed, as in H&M's data),
    30% of customers never buy, 10% without an age."""
    rng = np.random.default_rng(seed)
    buyers = rng.permutation(customers)[: int(customers * 0.7)]
    activity = rng.lognormal(0, 1.2, len(buyers))
    popularity = rng.lognormal(0, 2.0, articles)
    cust = rng.choice(buyers, purchases, p=activity / activity.sum())
    art = rng.choice(articles, purchases, p=popularity / popularity.sum())
    t_dat = np.datetime64("2020-09-22", "D") - rng.integers(0, days, purchases)
    ages = np.where(rng.random(customers) < 0.1, -1, rng.integers(16, 90, customers))
    return Interactions(cust.astype(np.int32), art.astype(np.int32), t_dat, customers, articles, ages)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--customers", type=int, default=1_371_980)
    parser.add_argument("--articles", type=int, default=105_542)
    parser.add_argument("--purchases", type=int, default=3_000_000)
    parser.add_argument("--days", type=int, default=120)
    parser.add_argument("--model", default="trending")
    parser.add_argument("--batch-size", type=int, default=512)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--dense-customers", type=int, default=20_000,
                        help="customers ranked by the dense path (GNN-like), timed and extrapolated; 0 skips")
    parser.add_argument("--workdir", type=Path, help="a trained workdir: time its model instead of a random case")
    parser.add_argument("-c", "--config", type=Path, help="the workdir's config (with --workdir)")
    parser.add_argument("--sample", type=int, default=20_480, help="customers ranked with --workdir")
    args = parser.parse_args()
    if args.workdir:
        return trained(args)

    t0 = time.perf_counter()
    inter = random_case(args.customers, args.articles, args.purchases, args.days, args.seed)
    customer_ids = np.array([os.urandom(32).hex() for _ in range(args.customers)], dtype=object)
    article_ids = 100_000_000 + np.arange(args.articles, dtype=np.int64) * 1000 + 1
    print(f"case: {args.customers:,} customers, {args.articles:,} articles, {len(inter):,} purchases "
          f"(built in {time.perf_counter() - t0:.1f} s)")

    t0 = time.perf_counter()
    model = create_model(args.model).fit(inter, dt.date(2020, 9, 22))
    print(f"fit {model!r}: {time.perf_counter() - t0:.2f} s")

    rng = np.random.default_rng(1)
    sample = rng.integers(0, args.customers, 200)
    model.recommend(int(sample[0]), k=12)  # warm-up
    times = []
    for c in sample:
        t = time.perf_counter()
        model.recommend(int(c), k=12)
        times.append(time.perf_counter() - t)
    ms = np.array(times) * 1e3
    print(f"one customer, in process: median {np.median(ms):.2f} ms, p95 {np.percentile(ms, 95):.2f} ms, "
          f"max {ms.max():.2f} ms (200 random customers)")

    with tempfile.TemporaryDirectory() as tmp:
        for name in ("submission.csv", "recs.parquet"):
            out = Path(tmp) / name
            t0 = time.perf_counter()
            write_recommendations(model, np.arange(args.customers), customer_ids, article_ids, out, k=12,
                                  batch_size=args.batch_size, show_progress=False)
            took = time.perf_counter() - t0
            print(f"all {args.customers:,} customers -> {name}: {took:.1f} s "
                  f"({args.customers / took:,.0f} customers/s, batch {args.batch_size}, "
                  f"{out.stat().st_size / 1e6:.0f} MB)")


    if args.dense_customers:
        dense = RandomDot().fit(inter, dt.date(2020, 9, 22))
        customers = np.arange(args.dense_customers)
        t0 = time.perf_counter()
        dense.recommend(customers, k=12, batch_size=args.batch_size)
        took = time.perf_counter() - t0
        print(f"dense path (random 64-d dot product), {args.dense_customers:,} customers: {took:.1f} s -> "
              f"~{took * args.customers / args.dense_customers / 60:.1f} min for all")


def trained(args: argparse.Namespace) -> None:
    """Time a trained workdir's model on a sample of its customers (see the module docstring)."""
    import hmgnn.ranking.recommender as gnn_module
    from hmgnn.config import load_config
    from hmgnn.recommend import fit_model

    cfg = load_config(args.config, workdir=args.workdir)
    t0 = time.perf_counter()
    model, _ = fit_model(cfg, args.model, k=cfg.recommend.k)
    fit_s = time.perf_counter() - t0
    print(f"fit {model.name} on every purchase of {args.workdir}: {fit_s:.1f} s")
    stages: dict[str, float] = {}
    rows = 0

    def timed(name, f):
        def run(*a, **kw):
            t = time.perf_counter()
            out = f(*a, **kw)
            stages[name] = stages.get(name, 0.0) + time.perf_counter() - t
            return out
        return run

    if getattr(model, "ranker", None) is not None:  # the two-stage gnn: time its stages
        gnn_module.candidate_pairs = timed("candidates", gnn_module.candidate_pairs)
        gnn_module.feature_matrix = timed("pair features", gnn_module.feature_matrix)
        predict = model.ranker.predict

        def counted(x):
            nonlocal rows
            rows += len(x)
            return predict(x)
        model.ranker.predict = timed("ranker prediction", counted)
    n = min(args.sample, model.n_customers)
    customers = np.sort(np.random.default_rng(args.seed).choice(model.n_customers, n, replace=False))
    batch = cfg.recommend.batch_size
    ids = np.array([f"{c:064x}" for c in customers.tolist()], dtype=object)
    with tempfile.TemporaryDirectory() as tmp:  # the path of `hmgnn recommend --all`, on the sample
        t0 = time.perf_counter()
        write_recommendations(model, customers, ids, np.arange(model.n_articles), Path(tmp) / "submission.csv",
                              k=cfg.recommend.k, batch_size=batch, show_progress=False)
        took = time.perf_counter() - t0
    rate = n / took
    print(f"{n:,} sampled customers in {took:.1f} s ({rate:,.0f} customers/s, batch {batch}, "
          f"{PARALLEL_BATCHES} side by side); all {model.n_customers:,}: "
          f"~{(model.n_customers / rate + fit_s) / 60:.1f} min projected with the fit")
    if stages:  # summed over the batches' threads, so shares of their total, not of the wall time
        total = sum(stages.values())
        split = ", ".join(f"{k} {v:.1f} s ({v / total:.0%})" for k, v in stages.items())
        print(f"stages (thread seconds): {split}; {rows / n:.0f} ranked candidates per customer")


if __name__ == "__main__":
    main()

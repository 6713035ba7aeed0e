"""How much learnable taste does the synthetic data hold? MAP@12 of history-only scorers up to an oracle.

    python benchmarks/ceiling.py -c configs/seed-scale.toml [--window validation|test] [--workdir DIR] [--json F]

Needs a workdir where `hmgnn synth`, `ingest`, `build-graph` and `sample` ran with that config (it only reads
tables/ and split/). The generator's hidden structure (article style clusters, each customer's favourite clusters
and weights) is regenerated in memory with `hmgnn.synth.generate`, so the raw data must come from this very config.

Every article is scored for every buyer of the window (validation: history -> validation purchases, as of
history_end; test: history + validation -> test purchases, as of val_end) and MAP@12 is printed for:

  1. popularity       log1p of each article's sales in the last 7 days
  2. + repurchase     + 10 x how often the customer bought the article (undecayed)
  3. + variant        + w x variant_matrix (other colours of products the customer bought), best w of 1/2/4
  4. + cluster (hist) best of rows 2-3 + beta x log(affinity / share) per TRUE article cluster, with the affinity
                      (count in cluster + alpha x share) / (n + alpha) from the customer's history; best beta, alpha
  5. oracle           best of rows 2-3 + beta x log(eps + sum_j w_j [cluster == k_j] / share) with the customer's
                      TRUE favourite clusters k_j and weights w_j; best beta, eps

(share: a cluster's share of the last 28 days of history sales.) How to read it: rows 1-3 are what hmgnn's blend
uses without the GNN. Row 4 is the ceiling of learning taste from history: it is handed the true clusters and
only has to estimate each customer's mix of them, so a GNN or any history-based model should not beat it by more
than noise. Row 5 needs knowledge no model has (the generator's latent taste) and bounds what taste can add at all;
the gap 4 -> 5 is taste hidden by short histories. The breakdown by number of history purchases shows where the
gap lies (settings are picked on the "all" column, so in a column an earlier row can win: e.g. the undecayed
repurchase boost crowds new articles out of heavy buyers' top 12, and rows 4-5 inherit it). The last two lines show
how much of the window's buying falls in the customer's own favourite clusters, against what those clusters' shares
of sales alone would give.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import sys
import time
from pathlib import Path
from typing import NoReturn

import numpy as np
import polars as pl
import scipy.sparse as sp
import torch
from rich.console import Console
from rich.table import Table

from hmgnn import artifacts
from hmgnn.config import load_config
from hmgnn.metrics import hits_matrix, map_at_k_curve
from hmgnn.models.base import Interactions, csr_rows
from hmgnn.synth import generate
from hmgnn.train import (WindowTruth, apply_blend, article_products, log_popularity,
                         read_interactions, repurchase_matrix, variant_matrix)

CHUNK = 512
REP_WEIGHT = 10.0
VARIANT_WEIGHTS = (1.0, 2.0, 4.0)
EMPIRICAL_GRID = [(beta, alpha) for beta in (0.5, 1.0) for alpha in (1.0, 3.0)]
ORACLE_GRID = [(beta, eps) for beta in (0.5, 1.0) for eps in (0.3, 1.0)]
BUCKETS = [("0", 0, 1), ("1-4", 1, 5), ("5-19", 5, 20), ("20-99", 20, 100), ("100+", 100, None)]


def fail(msg: str) -> NoReturn:
    sys.exit(f"ceiling: {msg}")


def load_latent(cfg, tables: Path) -> dict[str, np.ndarray]:
    """The generator's hidden structure, after checking the tables were generated from this config."""
    data = generate(cfg.synth, cfg.seed)
    for name, col in (("articles", "article_id"), ("customers", "customer_id")):
        index = f"{name[:-1]}_index"
        ids = pl.read_parquet(tables / f"{name}.parquet", columns=[index, col]).sort(index)[col]
        ours = getattr(data, name)[col].cast(ids.dtype)
        if len(ids) != len(ours) or not (ids == ours).all():
            fail(f"{tables / name}.parquet does not hold the {name} that synth generates from this config "
                 f"({len(ids)} rows vs {len(ours)}): the raw data were not generated with it (or with another seed)")
    return data.latent


def top12(customers: np.ndarray, scorers: dict[str, callable]) -> dict[str, np.ndarray]:
    """Top-12 articles of every scorer for the customers, CHUNK customers at a time."""
    tops: dict[str, list[np.ndarray]] = {name: [] for name in scorers}
    for s in range(0, len(customers), CHUNK):
        c = customers[s:s + CHUNK]
        for name, score in scorers.items():
            tops[name].append(torch.topk(score(c), 12, dim=1).indices.numpy())
    return {name: np.concatenate(t) for name, t in tops.items()}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("-c", "--config", required=True)
    ap.add_argument("--window", choices=["validation", "test"], default="validation")
    ap.add_argument("--workdir", help="default: the config's workdir")
    ap.add_argument("--json", type=Path, help="also write the numbers here")
    args = ap.parse_args()
    t0 = time.perf_counter()
    cfg = load_config(args.config, workdir=args.workdir)
    work = Path(cfg.workdir)
    tables, split = work / artifacts.TABLES, work / artifacts.SPLIT
    for p in (tables / "articles.parquet", tables / "customers.parquet", split / "manifest.json"):
        if not p.exists():
            fail(f"{p} is missing: run hmgnn synth/ingest/build-graph/sample with {args.config} first")

    # --- the window, the history before it and the blend's history signals
    windows = json.loads((split / "manifest.json").read_text())["windows"]
    na = pl.scan_parquet(tables / "articles.parquet").select(pl.len()).collect().item()
    nc = pl.scan_parquet(tables / "customers.parquet").select(pl.len()).collect().item()
    hist = read_interactions(split / artifacts.HISTORY_PARQUET, nc, na)
    window = read_interactions(split / artifacts.VALIDATION_PARQUET, nc, na)
    as_of = dt.date.fromisoformat(windows["history_end"])
    if args.window == "test":
        hist = Interactions(np.r_[hist.customer_index, window.customer_index],
                            np.r_[hist.article_index, window.article_index], np.r_[hist.t_dat, window.t_dat], nc, na)
        window = read_interactions(split / artifacts.TEST_PARQUET, nc, na)
        as_of = dt.date.fromisoformat(windows["val_end"])
    truth = WindowTruth.of(window)
    cust = truth.customers
    lp = torch.from_numpy(log_popularity(hist, as_of))
    rep = repurchase_matrix(hist, as_of, 0)
    var = variant_matrix(hist, article_products(tables))

    # --- the hidden taste: true clusters, their recent shares, each customer's history per cluster
    lat = load_latent(cfg, tables)
    acl, fav, fav_w = lat["article_cluster"].astype(np.int64), lat["customer_clusters"], lat["customer_cluster_weights"]
    ncl = len(lat["cluster_group"])
    share_np = np.bincount(acl[hist.article_index[hist.days_before(as_of) < 28]], minlength=ncl) + 1.0
    share_np /= share_np.sum()
    share, acl_t = torch.from_numpy(share_np).float(), torch.from_numpy(acl)
    counts = sp.csr_matrix((np.ones(len(hist), np.float32), (hist.customer_index, acl[hist.article_index])),
                           shape=(nc, ncl))
    n_hist = np.bincount(hist.customer_index, minlength=nc)

    def base(c, w_var=0.0, rep_w=REP_WEIGHT):
        out = lp.expand(len(c), -1).clone()
        if w_var:
            apply_blend(out, csr_rows(var, c), w_var)
        return apply_blend(out, csr_rows(rep, c), rep_w) if rep_w else out

    def empirical(c, beta, alpha):  # [B, ncl] smoothed log affinity from the history
        n = torch.from_numpy(n_hist[c]).float()[:, None]
        return beta * torch.log((torch.from_numpy(counts[c].toarray()) + alpha * share) / (n + alpha) / share)

    def oracle(c, beta, eps):  # [B, ncl] from the true favourite clusters and weights
        t = torch.zeros(len(c), ncl)
        who = torch.arange(len(c))[:, None].expand(-1, fav.shape[1])
        t.index_put_((who, torch.from_numpy(fav[c].astype(np.int64))), torch.from_numpy(fav_w[c]).float(),
                     accumulate=True)
        return beta * torch.log(eps + t / share)

    # --- pass 1: the blend's signals; pass 2: taste on top of the best of them
    first = {"popularity": lambda c: base(c, rep_w=0.0), "repurchase": lambda c: base(c)}
    first |= {f"variant w={w:g}": (lambda c, w=w: base(c, w)) for w in VARIANT_WEIGHTS}
    tops = top12(cust, first)
    maps = {k: truth.map_at_k(t) for k, t in tops.items()}
    best_var = max(VARIANT_WEIGHTS, key=lambda w: maps[f"variant w={w:g}"])
    rows = [("1. popularity", "log1p 7-day sales", tops["popularity"]),  # (row, setting, top-12)
            ("2. + repurchase", f"weight {REP_WEIGHT:g}", tops["repurchase"]),
            ("3. + variant", f"weight {best_var:g}", tops[f"variant w={best_var:g}"])]
    w_var = best_var if maps[f"variant w={best_var:g}"] > maps["repurchase"] else 0.0
    on = f"row {3 if w_var else 2} + "
    second = {f"cluster beta={b:g} alpha={a:g}": (lambda c, b=b, a=a: base(c, w_var) + empirical(c, b, a)[:, acl_t])
              for b, a in EMPIRICAL_GRID}
    second |= {f"oracle beta={b:g} eps={e:g}": (lambda c, b=b, e=e: base(c, w_var) + oracle(c, b, e)[:, acl_t])
               for b, e in ORACLE_GRID}
    tops = top12(cust, second)
    maps |= {k: truth.map_at_k(t) for k, t in tops.items()}
    for kind, label in (("cluster", "4. + cluster (history)"), ("oracle", "5. oracle (true taste)")):
        k = max((k for k in tops if k.startswith(kind)), key=maps.get)
        rows.append((label, on + k.split(" ", 1)[1].replace("=", " "), tops[k]))

    # --- breakdown by history length, and how much of the window's buying is in the favourite clusters
    nh = n_hist[cust]
    masks = [("all", nh >= 0)] + [(b, (nh >= lo) & (nh < (hi or np.inf))) for b, lo, hi in BUCKETS]
    results = []
    for label, setting, top in rows:
        hits, nrel = hits_matrix(top, cust, truth.bought_customers, truth.bought_articles)
        results.append({"row": label, "setting": setting,
                        "map@12": {b: float(map_at_k_curve(hits[m, :12], nrel[m])[-1]) if m.any() else None
                                   for b, m in masks}})
    wc, wa = truth.bought_customers, truth.bought_articles
    own = fav[wc].astype(np.int64)
    in_fav = (acl[wa][:, None] == own).any(1)
    distinct = np.stack([(own[:, j:j + 1] != own[:, :j]).all(1) for j in range(own.shape[1])], 1)
    chance = (share_np[own] * distinct).sum(1)  # favourite clusters' share of sales, each cluster once
    row_bucket = {b: np.isin(wc, cust[m]) for b, m in masks}
    fav_share = {b: float(in_fav[r].mean()) if r.any() else None for b, r in row_bucket.items()}
    fav_chance = {b: float(chance[r].mean()) if r.any() else None for b, r in row_bucket.items()}

    # --- report
    console = Console()
    if not console.is_terminal:
        console.width = max(console.width, 160)  # piped: one line per row
    table = Table(title=f"MAP@12 ceiling: {work} ({args.window} window, as of {as_of}, {ncl} clusters, "
                        f"{len(hist):,} history purchases)")
    table.add_column("scorer")
    table.add_column("setting", style="dim")
    for b, m in masks:
        table.add_column(f"{b}\n{int(m.sum()):,} cust.", justify="right")
    fmt = lambda v: "-" if v is None else f"{v:.4f}"
    for r in results:
        table.add_row(r["row"], r["setting"], *(fmt(r["map@12"][b]) for b, _ in masks), end_section=r is results[2])
    pct = lambda v: "-" if v is None else f"{100 * v:.0f}%"
    table.add_row("window buys in own fav. clusters", "", *(pct(fav_share[b]) for b, _ in masks), style="italic")
    table.add_row("  by their sales share alone", "", *(pct(fav_chance[b]) for b, _ in masks), style="dim")
    console.print(table)
    console.print("columns: customers by number of history purchases; rows 4-5 use the best of rows 2-3 as their base")
    seconds = time.perf_counter() - t0
    console.print(f"{seconds:.0f} s")
    if args.json:
        out = {"config": args.config, "workdir": str(work), "window": args.window, "as_of": str(as_of),
               "clusters": ncl, "customers": {b: int(m.sum()) for b, m in masks}, "rows": results,
               "grid": maps, "fav_cluster_share": fav_share,
               "fav_cluster_chance": fav_chance, "seconds": round(seconds, 1)}
        args.json.write_text(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()

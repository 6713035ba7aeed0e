"""Quality over several test windows and seeds: is a model's MAP@12 win real or noise?

One test window of a few hundred customers moves MAP@12 by 0.01-0.02 between runs, so this script moves the
sample step's cutoff back by `test_days` for each of `--windows` consecutive windows, trains with each of
`--seeds`, evaluates every model on the same split, and prints mean and spread per model.

    python benchmarks/quality.py -c configs/seed-scale.toml --windows 3 --seeds 42 43 \
        --models popular popular-new repurchase trending als --out work/quality-seed

It needs `<workdir>/tables` and `<workdir>/graph` (run synth/ingest/build-graph first); each run gets its own
workdir under --out with links to those two folders, so nothing in the main workdir is touched.
--evaluate-only scores the runs already under --out again (same splits, same trained models), for a change to
how a model scores that needs no retraining.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import statistics
import subprocess
import sys
import time
from pathlib import Path

import polars as pl

from hmgnn.config import load_config
from hmgnn.models.baselines import BASELINES

METRICS = ("map@12", "recall@12", "recall@100", "hit@12", "auc", "ap", "accuracy", "f1")


def _validation(workdir: Path) -> dict:
    """What `hmgnn train` measured on its held-out label customers (model/manifest.json), or {}."""
    manifest = workdir / "model" / "manifest.json"
    if not manifest.is_file():
        return {}
    return (json.loads(manifest.read_text()).get("ranker") or {}).get("validation") or {}


def hmgnn(*args: str) -> None:
    subprocess.run([sys.executable, "-m", "hmgnn.cli", *args], check=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("-c", "--config", required=True)
    ap.add_argument("--windows", type=int, default=3)
    ap.add_argument("--skip-windows", type=int, default=0,
                    help="start this many test windows before the newest: choose settings on earlier cutoffs than "
                         "the ones a results table reports")
    ap.add_argument("--seeds", type=int, nargs="+", default=[42, 43])
    ap.add_argument("--models", nargs="+",
                    default=["popular", "popular-new", "repurchase", "trending", "als", "rp3beta", "ease"])
    ap.add_argument("--reference", action="store_true", help="also train and score the reference recipe")
    ap.add_argument("--set", dest="overrides", action="append", default=[], help="config override, repeatable")
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--evaluate-only", action="store_true",
                    help="score the runs already under --out again (after a change to how models score), without "
                         "sampling or training them again")
    args = ap.parse_args()

    cfg = load_config(args.config, args.overrides)
    base = Path(cfg.workdir).resolve()
    last = pl.read_parquet(base / "tables" / "transactions.parquet", columns=["t_dat"])["t_dat"].max()
    runs = []
    for w in range(args.skip_windows, args.skip_windows + args.windows):
        cutoff = last - dt.timedelta(days=cfg.sample.test_days * (w + 1))
        for seed in args.seeds:
            wd = args.out / f"window{w}-seed{seed}"
            wd.mkdir(parents=True, exist_ok=True)
            for name in ("tables", "graph"):
                if not (wd / name).exists():
                    (wd / name).symlink_to(base / name)
            common = ["-c", args.config, "-w", str(wd), "--set", f"seed={seed}",
                      "--set", f"sample.cutoff={cutoff.isoformat()}"]
            for o in args.overrides:
                common += ["--set", o]
            t0 = time.perf_counter()
            if args.evaluate_only:
                if not (wd / "split").is_dir():
                    sys.exit(f"--evaluate-only: {wd / 'split'} does not exist; run without --evaluate-only first")
            else:
                hmgnn("sample", *common)
                hmgnn("train", *common)
                if args.reference:
                    hmgnn("train", *common, "--recipe", "reference")
            models = "[" + ",".join(f"'{m}'" for m in args.models) + "]"
            hmgnn("evaluate", *common, "--set", f"evaluate.models={models}", *(["--force"] if args.evaluate_only else []))
            metrics = json.loads((wd / "evaluate" / "metrics.json").read_text())
            runs.append({"window": w, "seed": seed, "cutoff": cutoff.isoformat(),
                         "test_customers": metrics["split"]["test_customers"],
                         "seconds": round(time.perf_counter() - t0, 1), "models": metrics["models"],
                         "headline": metrics.get("headline", {}), "validation": _validation(wd)})

    names = list(runs[0]["models"])
    summary = {}
    for name in names:
        summary[name] = {}
        for m in METRICS:
            values = [r["models"][name][m] for r in runs if r["models"][name].get(m) is not None]
            if values:
                summary[name][m] = {"mean": statistics.fmean(values),
                                    "std": statistics.stdev(values) if len(values) > 1 else 0.0}
    best_baseline = max((n for n in names if n in BASELINES), key=lambda n: summary[n]["map@12"]["mean"])
    lines = [f"# Quality over {args.windows} test windows x {len(args.seeds)} seeds ({args.config})", "",
             f"Cutoffs: {', '.join(sorted({r['cutoff'] for r in runs}))}; test customers per window: "
             f"{', '.join(str(r['test_customers']) for r in runs[::len(args.seeds)])}", "",
             "| model | " + " | ".join(METRICS) + " |", "|---" * (len(METRICS) + 1) + "|"]
    for name in names:
        cells = [f"{summary[name][m]['mean']:.4f} ± {summary[name][m]['std']:.4f}" if m in summary[name] else "-"
                 for m in METRICS]
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    if "gnn" in summary:
        ratio = summary["gnn"]["map@12"]["mean"] / max(summary[best_baseline]["map@12"]["mean"], 1e-12)
        lines += ["", f"GNN MAP@12 / best baseline ({best_baseline}): {ratio:.2f}x"]
        if "als" in summary:
            lines.append(f"GNN MAP@12 / ALS: {summary['gnn']['map@12']['mean'] / max(summary['als']['map@12']['mean'], 1e-12):.2f}x")
        for m in ("map@12", "recall@12"):  # how often the win holds run by run, not only on the mean
            for peer in dict.fromkeys([best_baseline] + (["als"] if "als" in summary else [])):
                wins = sum(r["models"]["gnn"][m] > r["models"][peer][m] for r in runs)
                lines.append(f"GNN {m} above {peer} in {wins} of {len(runs)} runs")
        for peer, label in (("ranker-only", "the GNN's contribution"), ("auto", "what auto answers with")):
            if peer in summary:
                ratio = summary["gnn"]["map@12"]["mean"] / max(summary[peer]["map@12"]["mean"], 1e-12)
                wins = sum(r["models"]["gnn"]["map@12"] > r["models"][peer]["map@12"] for r in runs)
                ties = sum(r["models"]["gnn"]["map@12"] == r["models"][peer]["map@12"] for r in runs)
                lines.append(f"GNN MAP@12 / {peer} ({label}): {ratio:.3f}x, above it in {wins} of {len(runs)} runs"
                             f" (equal in {ties})")
        if "auto" in summary:
            ratio = summary["auto"]["map@12"]["mean"] / max(summary[best_baseline]["map@12"]["mean"], 1e-12)
            lines.append(f"auto MAP@12 / best baseline: {ratio:.3f}x")
        for peer in ("rp3beta", "ease", "als"):  # the GNN alone against the peers
            if "gnn-retrieval" in summary and peer in summary:
                for m in ("map@12", "recall@100"):
                    if m in summary[peer] and m in summary["gnn-retrieval"]:
                        ratio = summary["gnn-retrieval"][m]["mean"] / max(summary[peer][m]["mean"], 1e-12)
                        wins = sum(r["models"]["gnn-retrieval"][m] > r["models"][peer][m] for r in runs)
                        lines.append(f"gnn-retrieval {m} / {peer}: {ratio:.2f}x, above it in {wins} of {len(runs)} runs")
    report = "\n".join(lines) + "\n"
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "quality.json").write_text(json.dumps({"runs": runs, "summary": summary}, indent=1))
    (args.out / "quality.md").write_text(report)
    print(report)


if __name__ == "__main__":
    main()

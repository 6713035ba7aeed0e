"""One line per data set from `quality.py` outputs, and the mean over the sets: is the win general?

    python benchmarks/quality_summary.py work/q/onlineretail work/q/movielens work/q/dunnhumby

For each folder (a `quality.py --out`), it prints the runs, the best baseline by mean MAP@12 (ALS and the trained
models excluded), `gnn` / that baseline and / ALS on the mean, how many runs `gnn` is above the baseline, and
`gnn-retrieval` (the GNN alone) / ALS on MAP@12 and Recall@100; then the mean of the per-set ratios.
"""

from __future__ import annotations

import argparse
import json
import statistics
from pathlib import Path

TRAINED = ("gnn", "gnn-retrieval", "reference", "als")


def summarise(folder: Path) -> dict[str, float | int | str]:
    quality = json.loads((folder / "quality.json").read_text())
    runs, summary = quality["runs"], quality["summary"]
    best = max((n for n in summary if n not in TRAINED), key=lambda n: summary[n]["map@12"]["mean"])

    def mean(model: str, metric: str = "map@12") -> float:
        return summary[model][metric]["mean"]

    row: dict[str, float | int | str] = {
        "set": folder.name, "runs": len(runs), "best": best, "gnn": mean("gnn"), "baseline": mean(best),
        "vs_best": mean("gnn") / mean(best),
        "wins": sum(r["models"]["gnn"]["map@12"] > r["models"][best]["map@12"] for r in runs),
    }
    if "als" in summary:
        row["vs_als"] = mean("gnn") / mean("als")
        if "gnn-retrieval" in summary:
            row["retrieval_vs_als"] = mean("gnn-retrieval") / mean("als")
            row["retrieval_recall_vs_als"] = mean("gnn-retrieval", "recall@100") / mean("als", "recall@100")
    return row


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("folders", type=Path, nargs="+", help="quality.py --out folders")
    rows = [summarise(f) for f in ap.parse_args().folders]
    print("| data | runs | best baseline | gnn MAP@12 | gnn / best | above it | gnn / ALS | gnn-retrieval / ALS "
          "(MAP@12, Recall@100) |")
    print("|---|---|---|---|---|---|---|---|")
    for r in rows:
        retrieval = (f"{r['retrieval_vs_als']:.2f}x, {r['retrieval_recall_vs_als']:.2f}x"
                     if "retrieval_vs_als" in r else "-")
        als = f"{r['vs_als']:.2f}x" if "vs_als" in r else "-"
        print(f"| {r['set']} | {r['runs']} | {r['best']} {r['baseline']:.4f} | {r['gnn']:.4f} | {r['vs_best']:.3f}x "
              f"| {r['wins']} of {r['runs']} | {als} | {retrieval} |")
    if len(rows) > 1:
        print(f"\nmean over {len(rows)} sets: gnn / best baseline {statistics.fmean(r['vs_best'] for r in rows):.3f}x, "
              f"above it in {sum(r['wins'] for r in rows)} of {sum(r['runs'] for r in rows)} runs")


if __name__ == "__main__":
    main()

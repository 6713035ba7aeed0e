"""One line per data set from `quality.py` outputs, and the mean over the sets: is the win general, and does the
GNN earn its place?

    python benchmarks/quality_summary.py work/q/onlineretail work/q/movielens work/q/dunnhumby

For each folder (a `quality.py --out`), it prints the runs, the best baseline by mean MAP@12 (the one-line models
only), `gnn` / that baseline and how many runs `gnn` is above it; the GNN's contribution, `gnn` / `ranker-only`
(the same ranker without the GNN's candidates and features) on the mean, its spread over runs and how many runs it
is above 1; what `auto` answers with / the best baseline; `gnn` / ALS; and `gnn-retrieval` (the GNN alone) / the
graph peers (`rp3beta`, `ease`) and ALS on MAP@12 and Recall@100. Then the mean of the per-set ratios.
"""

from __future__ import annotations

import argparse
import json
import statistics
from pathlib import Path

from hmgnn.models.baselines import BASELINES


def summarise(folder: Path) -> dict:
    quality = json.loads((folder / "quality.json").read_text())
    runs, summary = quality["runs"], quality["summary"]
    best = max((n for n in summary if n in BASELINES), key=lambda n: summary[n]["map@12"]["mean"])

    def mean(model: str, metric: str = "map@12") -> float:
        return summary[model][metric]["mean"]

    def per_run(a: str, b: str, metric: str = "map@12") -> list[float]:
        return [r["models"][a][metric] / max(r["models"][b][metric], 1e-12) for r in runs]

    row: dict = {"set": folder.name, "runs": len(runs), "best": best, "gnn": mean("gnn"), "baseline": mean(best),
                 "vs_best": mean("gnn") / mean(best),
                 "wins": sum(r["models"]["gnn"]["map@12"] > r["models"][best]["map@12"] for r in runs)}
    if "ranker-only" in summary:
        ratios = per_run("gnn", "ranker-only")
        row["contribution"] = mean("gnn") / mean("ranker-only")
        row["contribution_runs"] = (min(ratios), max(ratios))
        row["contribution_wins"] = sum(x > 1 for x in ratios)
    if "auto" in summary:
        row["auto_vs_best"] = mean("auto") / mean(best)
        row["auto_models"] = sorted({r["headline"].get("auto_answers_with", "?") for r in runs if r.get("headline")})
    if "als" in summary:
        row["vs_als"] = mean("gnn") / mean("als")
    for peer in ("rp3beta", "ease", "als"):
        if "gnn-retrieval" in summary and peer in summary:
            row[f"retrieval_vs_{peer}"] = (mean("gnn-retrieval") / mean(peer),
                                           mean("gnn-retrieval", "recall@100") / mean(peer, "recall@100"))
    return row


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("folders", type=Path, nargs="+", help="quality.py --out folders")
    rows = [summarise(f) for f in ap.parse_args().folders]
    print("| data | runs | best baseline | gnn MAP@12 | gnn / best | above it | GNN's contribution: gnn / ranker-only "
          "(runs' range, above 1) | auto / best | gnn / ALS | gnn-retrieval / rp3beta, ease, ALS (MAP@12, Recall@100) |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        contribution = (f"{r['contribution']:.3f}x ({r['contribution_runs'][0]:.2f}-{r['contribution_runs'][1]:.2f}, "
                        f"{r['contribution_wins']} of {r['runs']})" if "contribution" in r else "-")
        auto = f"{r['auto_vs_best']:.3f}x ({', '.join(r['auto_models'])})" if "auto_vs_best" in r else "-"
        als = f"{r['vs_als']:.2f}x" if "vs_als" in r else "-"
        peers = "; ".join(f"{p} {r[f'retrieval_vs_{p}'][0]:.2f}x, {r[f'retrieval_vs_{p}'][1]:.2f}x"
                          for p in ("rp3beta", "ease", "als") if f"retrieval_vs_{p}" in r) or "-"
        print(f"| {r['set']} | {r['runs']} | {r['best']} {r['baseline']:.4f} | {r['gnn']:.4f} | {r['vs_best']:.3f}x "
              f"| {r['wins']} of {r['runs']} | {contribution} | {auto} | {als} | {peers} |")
    if len(rows) > 1:
        line = (f"\nmean over {len(rows)} sets: gnn / best baseline {statistics.fmean(r['vs_best'] for r in rows):.3f}x, "
                f"above it in {sum(r['wins'] for r in rows)} of {sum(r['runs'] for r in rows)} runs")
        if all("contribution" in r for r in rows):
            line += f"; the GNN's contribution {statistics.fmean(r['contribution'] for r in rows):.3f}x"
        print(line)


if __name__ == "__main__":
    main()

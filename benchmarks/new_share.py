"""What a test week holds that a heuristic can reach: the share of its (customer, article) purchases that re-buy an
article the customer bought before, and of the others, how many were among the week before's bestsellers or not
sold at all that week (no popularity signal reaches those; only a model of the customer's taste can).

    python benchmarks/new_share.py work/q40/dh-default/window4-seed42 [more workdirs split by `hmgnn sample`]

Reads each workdir's split/ (history, validation, test) and prints one line per workdir.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import polars as pl

PAIR = ["customer_index", "article_index"]


def shares(workdir: Path) -> dict[str, float]:
    split = Path(workdir) / "split"
    history = pl.concat([pl.read_parquet(split / f"{n}.parquet", columns=PAIR) for n in ("history", "validation")])
    week_before = pl.read_parquet(split / "validation.parquet", columns=PAIR)
    test = pl.read_parquet(split / "test.parquet", columns=PAIR).unique()
    seen = history.unique().with_columns(pl.lit(True).alias("seen"))
    pairs = test.join(seen, on=PAIR, how="left").with_columns(pl.col("seen").fill_null(False))
    rank = (week_before.group_by("article_index").len().sort(["len", "article_index"], descending=[True, False])
            .with_row_index("rank"))
    new = pairs.filter(~pl.col("seen")).join(rank, on="article_index", how="left")
    return {"pairs": len(pairs), "customers": test["customer_index"].n_unique(),
            "rebuy": float(pairs["seen"].mean()),
            "new_top100": float((new["rank"] < 100).mean()), "new_top1000": float((new["rank"] < 1000).mean()),
            "new_unsold": float(new["rank"].is_null().mean())}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("workdirs", nargs="+", type=Path)
    args = ap.parse_args()
    print("| workdir | test customers | (customer, article) pairs | re-bought | new: in the week before's top 100 | "
          "top 1,000 | not sold that week |")
    print("|---|---|---|---|---|---|---|")
    for wd in args.workdirs:
        s = shares(wd)
        print(f"| {wd} | {s['customers']:,} | {s['pairs']:,} | {s['rebuy']:.3f} | {s['new_top100']:.3f} | "
              f"{s['new_top1000']:.3f} | {s['new_unsold']:.3f} |")


if __name__ == "__main__":
    main()

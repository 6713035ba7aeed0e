"""`hmgnn update` against a full retrain: is a week added without training as good, and how much faster?

Run: python benchmarks/bench_update.py -c configs/onlineretail.toml --raw ../shared/data/onlineretail2010-as-hm
     --out work/bench-update/onlineretail [--set key=value ...]

With L the data's last day and the config's `sample.test_days` as the week (7 days; MovieLens' config: 180), the
scored week W+2 is (L-7, L], W+1 = (L-14, L-7], and W ends at C1 = L-14:
- retrain: the whole data ingested, `sample` with cutoff L-7, `train` (on every purchase through L-7), `evaluate`;
- update: only the purchases through the first day after C1 with purchases ingested (`sample` needs one test day
  after its cutoff, and that day is never trained on), `sample` with cutoff C1, `train` (through C1), then `hmgnn update` with the rest of W+1
  (all but its first day), timed; then a second, untimed update adds W+2 (which the scoring split holds out), `sample --out` with
  cutoff L-7 into a folder of its own, and `evaluate --in` it: the updated model, as `evaluate` fits every model,
  on the purchases through L-7, scored on W+2 like the retrain.
Both `evaluate`s score the same customers on the same week. Customers and articles are ingested whole in both
(new ones in W+1 are nodes from the start, as they are for the retrain). Prints MAP@12 of both and their ratio, and
the update's time against the retrain's `sample` + `train` (with and without the answers it stores for
`recommend --customer-id`, see hmgnn/answers.py); writes bench_update.json under --out. Asserts nothing.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

import polars as pl

from hmgnn.config import load_config

MODELS = "['repurchase', 'trending']"


STORED = re.compile(r"stored every customer's answer in .*? \((\d+) s;")
LAST_STORE: list[float] = []


def hmgnn(*args: str) -> float:
    """Run one `hmgnn` command; its wall time in seconds (and in LAST_STORE, the seconds it said storing every
    customer's answer took, if it did)."""
    started = time.perf_counter()
    done = subprocess.run([sys.executable, "-m", "hmgnn.cli", *map(str, args)], capture_output=True, text=True)
    if done.returncode:
        sys.exit(f"failed ({done.returncode}): hmgnn {' '.join(map(str, args))}\n{done.stderr[-3000:]}")
    LAST_STORE[:] = [float(m) for m in STORED.findall(done.stderr)]
    return time.perf_counter() - started


def _transactions(raw: Path) -> tuple[pl.DataFrame, str]:
    for name in ("transactions_train.parquet", "transactions_train.csv"):
        if (raw / name).is_file():
            if name.endswith(".parquet"):
                return pl.read_parquet(raw / name), name
            return pl.read_csv(raw / name, infer_schema_length=0), name
    sys.exit(f"{raw} holds no transactions_train.parquet or .csv")


def _write(frame: pl.DataFrame, folder: Path, name: str) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    if name.endswith(".parquet"):
        frame.write_parquet(folder / name)
    else:
        frame.write_csv(folder / name)


def _gnn_map(workdir: Path, evaluate: str) -> float:
    return json.loads((workdir / evaluate / "metrics.json").read_text())["models"]["gnn"]["map@12"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("-c", "--config", required=True)
    parser.add_argument("--raw", type=Path, required=True, help="the data set's raw folder (Kaggle schema)")
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--refit-ranker", action="store_true", help="time `hmgnn update --refit-ranker` instead")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE")
    args = parser.parse_args()
    out = args.out.resolve()
    if out.exists():
        shutil.rmtree(out)
    sets = [a for o in args.overrides + ["evaluate.threshold=median", f"evaluate.models={MODELS}"]
            for a in ("--set", o)]

    tx, name = _transactions(args.raw)
    days = pl.col("t_dat").cast(pl.String).str.to_date()
    last = tx.select(days.max()).item()
    window = dt.timedelta(days=load_config(args.config, args.overrides).sample.test_days)  # a "week"
    c2, c1 = last - window, last - 2 * window
    extra = [p for p in args.raw.iterdir() if p.name.split(".")[0] in ("customers", "articles")]

    def raw_folder(folder: Path, rows: pl.DataFrame, with_tables: bool) -> Path:
        _write(rows, folder, name)
        for path in extra if with_tables else []:
            (folder / path.name).symlink_to(path.resolve())
        return folder

    # the retrain: everything through L-7 learned, W+2 scored
    r = out / "retrain"
    hmgnn("ingest", "-c", args.config, "-w", r, "--raw", raw_folder(out / "raw-all", tx, True), *sets)
    hmgnn("build-graph", "-c", args.config, "-w", r, *sets)
    retrain = hmgnn("sample", "-c", args.config, "-w", r, "--set", f"sample.cutoff={c2}", *sets)
    retrain += hmgnn("train", "-c", args.config, "-w", r, "--set", f"sample.cutoff={c2}", *sets)
    hmgnn("evaluate", "-c", args.config, "-w", r, "--set", f"sample.cutoff={c2}", *sets)

    # the update: trained through C1, W+1 added by `hmgnn update`, scored on W+2 the same way
    u = out / "update"
    kept = tx.filter(days > c1).select(days.min()).item()  # the first day after C1 with purchases
    first = tx.filter(days <= kept)
    hmgnn("ingest", "-c", args.config, "-w", u, "--raw", raw_folder(out / "raw-first", first, True), *sets)
    hmgnn("build-graph", "-c", args.config, "-w", u, *sets)
    train_u = hmgnn("sample", "-c", args.config, "-w", u, "--set", f"sample.cutoff={c1}", *sets)
    train_u += hmgnn("train", "-c", args.config, "-w", u, "--set", f"sample.cutoff={c1}", *sets)
    week = tx.filter((days > kept) & (days <= c2))
    update = hmgnn("update", "-c", args.config, "-w", u, "--raw", raw_folder(out / "raw-week", week, False), *sets,
                   *(["--refit-ranker"] if args.refit_ranker else []))
    update_store = sum(LAST_STORE)
    hmgnn("update", "-c", args.config, "-w", u, "--raw", raw_folder(out / "raw-scored", tx.filter(days > c2), False),
          *sets)
    hmgnn("sample", "-c", args.config, "-w", u, "--out", u / "split-scored", "--set", f"sample.cutoff={c2}", *sets)
    hmgnn("evaluate", "-c", args.config, "-w", u, "--in", u / "split-scored", "--out", u / "evaluate-scored", *sets)

    result = {"config": args.config, "refit_ranker": args.refit_ranker, "last_day": str(last), "scored_week": f"{c2 + dt.timedelta(days=1)}..{last}",
              "update_week": f"{kept + dt.timedelta(days=1)}..{c2}", "update_rows": week.height,
              "retrain_map@12": _gnn_map(r, "evaluate"), "update_map@12": _gnn_map(u, "evaluate-scored"),
              "retrain_seconds (sample + train)": round(retrain, 1), "update_seconds": round(update, 1),
              "of_which_storing_answers": update_store,
              "first_train_seconds (sample + train)": round(train_u, 1)}
    result["map_ratio"] = round(result["update_map@12"] / max(result["retrain_map@12"], 1e-12), 4)
    result["time_ratio"] = round(update / max(retrain, 1e-9), 4)
    result["time_ratio_without_storing_answers"] = round((update - update_store) / max(retrain, 1e-9), 4)
    (out / "bench_update.json").write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()

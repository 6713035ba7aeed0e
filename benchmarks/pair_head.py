"""The GNN's binary metrics with and without its pair head, on trained workdirs (e.g. benchmarks/quality.py's).

For each workdir: the GNN as of the end of history, the pair head fit on the validation pairs exactly as
`hmgnn train` fits it (`hmgnn.train.fit_pair_head`), then the test pairs scored with the model fit on history +
validation, as `hmgnn evaluate` scores them: ROC-AUC, AP, accuracy and F1 of the blend's rank-normalised scores
and of the head's probabilities. A checkpoint that already holds a head is scored with a freshly fit one (the
same numbers, since the fit is deterministic).

    python benchmarks/pair_head.py -c configs/seed-scale.toml work/quality-seed/window*-seed*
"""

from __future__ import annotations

import argparse
import datetime as dt
import statistics
import sys
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import polars as pl
import torch

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from hmgnn import artifacts  # noqa: E402
from hmgnn.config import load_config  # noqa: E402
from hmgnn.metrics import binary_metrics, to_probability  # noqa: E402
from hmgnn.models.base import Interactions  # noqa: E402
from hmgnn.models.gnn_recommender import GNNRecommender  # noqa: E402
from hmgnn.train import fit_pair_head  # noqa: E402


def measure(config: str, workdir: Path) -> dict[str, dict[str, float]]:
    cfg = load_config(config, [], workdir=workdir)
    split = workdir / artifacts.SPLIT
    model = GNNRecommender.from_config(cfg)
    n_c, n_a = model.model.num_customers, model.model.num_articles
    windows = artifacts.read_manifest(split)["windows"]
    history = Interactions.from_frame(pl.read_parquet(split / artifacts.HISTORY_PARQUET), n_c, n_a)
    seen = Interactions.from_frame(pl.concat([pl.read_parquet(split / artifacts.HISTORY_PARQUET),
                                              pl.read_parquet(split / artifacts.VALIDATION_PARQUET)]), n_c, n_a)
    history_end = dt.date.fromisoformat(windows["history_end"])
    model.pair_head = None
    model.fit(history, history_end)
    data = SimpleNamespace(history=history, history_end=history_end,
                           article_product=model.checkpoint["article_product"])
    head = fit_pair_head(model.customer_emb, model.article_emb, data, model.signals,
                         split / artifacts.VALIDATION_PAIRS_PARQUET, cfg.seed)
    pairs = pl.read_parquet(split / artifacts.TEST_PAIRS_PARQUET).filter(pl.col("kind").is_in(artifacts.BINARY_KINDS))
    c, a, y = (pairs[k].to_numpy() for k in ("customer_index", "article_index", "label"))
    model.fit(seen, dt.date.fromisoformat(windows["val_end"]))
    out = {"blend": binary_metrics(y, to_probability(model.score(c, a), "rank"))}
    model.pair_head, model.score_kind = head, "probability"
    model.fit(seen, dt.date.fromisoformat(windows["val_end"]))
    out["pair head"] = binary_metrics(y, model.score(c, a))
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("-c", "--config", required=True)
    ap.add_argument("workdirs", type=Path, nargs="+")
    args = ap.parse_args()
    torch.set_num_threads(min(2, torch.get_num_threads()))
    runs = []
    for wd in args.workdirs:
        r = measure(args.config, wd)
        runs.append(r)
        print(wd, {k: {m: round(v, 4) for m, v in r[k].items()} for k in r}, flush=True)
    print(f"\n{'scores':<10} " + " ".join(f"{m:>16}" for m in ("auc", "ap", "accuracy", "f1")))
    for kind in ("blend", "pair head"):
        cells = []
        for m in ("auc", "ap", "accuracy", "f1"):
            values = [r[kind][m] for r in runs]
            spread = statistics.stdev(values) if len(values) > 1 else 0.0
            cells.append(f"{statistics.mean(values):.3f} ± {spread:.3f}")
        print(f"{kind:<10} " + " ".join(f"{c:>16}" for c in cells))
    print(f"({len(runs)} workdirs; reference project, leaky split: auc 0.917, ap 0.910, accuracy 0.8475, f1 0.85)")


if __name__ == "__main__":
    main()

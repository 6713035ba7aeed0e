"""What the GNN alone ranks, epoch by epoch: a diagnosis of early stopping on one workdir's split.

Run: python benchmarks/gnn_epochs.py -c configs/dunnhumby.toml --epochs 5 [--set train.negatives=uniform ...]
(the workdir needs tables/, graph/ and split/). Trains the GNN as `hmgnn train` does (the same label windows, so the
same training end) and prints, after each epoch, the validation MAP@12 of the GNN's scores over every article (the
early-stopping figure), over the articles sold in the last 28 days of history only, and over the articles new to
each customer (bought ones left out), with the median all-time sales of its top 12 and the share of them sold in
those 28 days: whether it learns taste or drifts to articles that barely sell. Prints figures, asserts nothing.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import torch

from hmgnn import artifacts, train
from hmgnn.config import load_config
from hmgnn.interactions import Interactions
from hmgnn.ranking.fit import label_windows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("-c", "--config", required=True)
    parser.add_argument("--epochs", type=int, default=5)
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE")
    args = parser.parse_args()
    cfg = load_config(args.config, args.overrides)
    wd = Path(cfg.workdir)
    data = train.load_training_data(wd / artifacts.GRAPH, wd / artifacts.SPLIT, wd / artifacts.TABLES)
    purchases = Interactions.concat([data.history, data.validation])
    data.train_end = label_windows(purchases, data.history_end, data.val_end, cfg.ranker)[-1].as_of
    trainer = train.Trainer(cfg.train.resolved(), cfg.seed, data, torch.device("cpu"))
    hist = data.history
    n_articles = data.article_x.shape[0]
    active = np.bincount(hist.article_index[hist.days_before(data.history_end) < 28], minlength=n_articles) > 0
    sales = np.bincount(hist.article_index, minlength=n_articles)
    customers = trainer.val_truth.customers
    print(f"{int(active.sum()):,} of {n_articles:,} articles sold in the last 28 days; "
          f"{len(customers):,} validation customers")
    for epoch in range(1, args.epochs + 1):
        loss = trainer.train_epoch()
        every = trainer.validate(drop_bought=False)
        new = trainer.validate(drop_bought=True)
        c_emb, a_emb = trainer.embeddings_for_validation()
        tops, tops_active = [], []
        with torch.no_grad():
            for s in range(0, len(customers), 1024):
                scores = trainer.model.score_all(c_emb, a_emb, torch.from_numpy(customers[s:s + 1024].astype(np.int64)))
                tops.append(torch.topk(scores, 12).indices.numpy())
                scores[:, torch.from_numpy(~active)] = -torch.inf
                tops_active.append(torch.topk(scores, 12).indices.numpy())
        top = np.concatenate(tops)
        sold = trainer.val_truth.map_at_k(np.concatenate(tops_active), 12)
        print(f"epoch {epoch} loss {loss:.4f}  val MAP@12: every article {every:.4f}, sold lately {sold:.4f}, "
              f"new to the customer {new:.4f}  top 12: median sales {np.median(sales[top]):,.0f}, "
              f"sold lately {active[top].mean():.2f}", flush=True)


if __name__ == "__main__":
    main()

"""`hmgnn evaluate`: every model fit on the days before the scored window, every article ranked, MAP@12 as Kaggle
scored it beside recall, NDCG, coverage and the binary metrics; writes metrics.json, report.md and plots."""

from __future__ import annotations

import dataclasses
import datetime as dt
import hashlib
import json
import math
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl

from hmgnn import artifacts as A
from hmgnn.config import Config, EvaluateConfig, RankerConfig, TrainConfig
from hmgnn.console import info, progress
from hmgnn.metrics import (average_precision_curve, best_f1_threshold, binary_metrics, bootstrap_interval,
                           bootstrap_ratio, map_at_k_curve, ranking_metrics, recall_at_k_curve, to_probability)
from hmgnn.interactions import Interactions, WindowTruth, article_sales
from hmgnn.models.base import Recommender
from hmgnn.models.baselines import BASELINES
from hmgnn.registry import create_model, model_class

PAIRS = {"test": A.TEST_PAIRS_PARQUET, "validation": A.VALIDATION_PAIRS_PARQUET}
MAP_PLOT = "map_at_k.png"
RECALL_PLOT = "recall_at_k.png"
POPULARITY_PLOT = "popularity.png"
# Trained models and the folder of their model.pt: evaluate adds each one that exists.
TRAINED = {"gnn": A.MODEL, "ranker-only": A.MODEL, "gnn-retrieval": A.MODEL, "reference": A.REFERENCE}
AUTO_ROW = "auto"
"""The row of what `recommend.model = auto` answers with (the model `hmgnn train` chose): the same ranking as that
model's row, named for what a user gets by default."""

SCORE_MAPPING = {
    "rank": "rank-normalised over the pairs ((rank - 0.5) / n, ties averaged): the 0.5 threshold is the median score",
    "logit": "sigmoid of the score",
    "probability": "the score itself (a probability)",
}

PLOT_COLOURS = ("#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#bcbd22", "#17becf",
                "#aec7e8", "#ffbb78", "#98df8a", "#ff9896", "#c5b0d5", "#c49c94", "#f7b6d2", "#dbdb8d", "#9edae5")
"""matplotlib's tab20 without its greys (grey marks K, black the bought articles): one colour per model."""
PLOT_MODELS = ("gnn", "ranker-only", "gnn-retrieval", "reference", "popular", "popular-new", "repurchase",
               "trending", "als", "rp3beta", "ease")
"""The models whose colours are fixed by their place here; any other name gets one of the remaining colours."""


def model_colour(name: str) -> str:
    """The plot colour of model `name`: the same in every run and every plot, whichever models are beside it (a
    known model by its place in PLOT_MODELS, any other by a hash of its name over the colours left over)."""
    if name in PLOT_MODELS:
        return PLOT_COLOURS[PLOT_MODELS.index(name)]
    spare = PLOT_COLOURS[len(PLOT_MODELS):]
    return spare[int.from_bytes(hashlib.blake2b(name.encode(), digest_size=4).digest(), "big") % len(spare)]


@dataclass
class ScoredWindow:
    """What the models may see (up to `as_of`), and the window they are scored on: its buyers and purchases
    (`truth`) and its fixed pairs for the binary metrics."""

    name: str
    seen: Interactions
    as_of: dt.date
    start: dt.date
    end: dt.date
    truth: WindowTruth
    pairs: pl.DataFrame | None
    pairs_file: str | None
    split: dict[str, Any]

    @property
    def customers(self) -> np.ndarray:
        """The scored customers: those with a purchase in the window, sorted."""
        return self.truth.customers


def load_window(split: Path, tables: Path, window: str) -> ScoredWindow:
    """Read split/ for `window`: test -> models see history + validation; validation -> history only."""
    history = pl.read_parquet(split / A.HISTORY_PARQUET)
    validation = pl.read_parquet(split / A.VALIDATION_PARQUET)
    test = pl.read_parquet(split / A.TEST_PARQUET)
    windows = (A.read_manifest(split) or {}).get("windows") or {}

    def day(key: str, frame: pl.DataFrame, pick: str) -> dt.date | None:
        if windows.get(key):
            return dt.date.fromisoformat(windows[key])
        return getattr(frame["t_dat"], pick)() if frame.height else None

    test_start, test_end = day("test_start", test, "min"), day("test_end", test, "max")
    val_start, val_end = day("val_start", validation, "min"), day("val_end", validation, "max")
    if window == "test":
        seen, scored, start, end = pl.concat([history, validation]), test, test_start, test_end
    else:
        seen, scored, start, end = history, validation, val_start, val_end
    if start is None:
        raise A.MissingArtifactError(f"{split / (A.TEST_PARQUET if window == 'test' else A.VALIDATION_PARQUET)} "
                                     f"is empty: nothing to score; run `hmgnn sample` with a longer window")
    summary = A.TablesSummary.read(tables)
    pairs, pairs_file = None, None
    if (split / PAIRS[window]).is_file():
        pairs_file = PAIRS[window]
        pairs = pl.read_parquet(split / pairs_file).filter(pl.col("kind").is_in(A.BINARY_KINDS))
    truth = WindowTruth.of(summary.interactions(scored))
    cutoff = windows.get("val_end") or (val_end.isoformat() if val_end else None)
    return ScoredWindow(
        name=window, seen=summary.interactions(seen), as_of=start - dt.timedelta(days=1), start=start, end=end,
        truth=truth, pairs=pairs, pairs_file=pairs_file,
        split={"cutoff": cutoff, "test_start": test_start.isoformat() if test_start else None,
               "test_end": test_end.isoformat() if test_end else None,
               "test_customers": int(test["customer_index"].n_unique()), "window": window,
               "scored_start": start.isoformat(), "scored_end": end.isoformat(),
               "scored_customers": len(truth.customers), "as_of": (start - dt.timedelta(days=1)).isoformat()})


def choose_threshold(model: Recommender, validation: ScoredWindow) -> float:
    """The cut on `model`'s mapped probabilities with the best F1 on the validation window's pairs, the model fit
    on what that window allows (so no test purchase chooses it)."""
    model.fit(validation.seen, validation.as_of)
    scores = model.score(validation.pairs["customer_index"].to_numpy(), validation.pairs["article_index"].to_numpy())
    return best_f1_threshold(validation.pairs["label"].to_numpy(), to_probability(scores, model.score_kind))


def evaluate_model(model: Recommender, data: ScoredWindow, cfg: EvaluateConfig,
                   threshold: float | None = None) -> dict[str, Any]:
    """Fit `model` on what the window allows, rank every article for every scored customer, and measure;
    accuracy and F1 cut the mapped probabilities at `threshold` (chosen on validation; None: 0.5)."""
    t0 = time.perf_counter()
    model.fit(data.seen, data.as_of)
    t1 = time.perf_counter()
    depth = max(cfg.k, cfg.max_k_plot)
    recommended, _ = model.recommend(data.customers, k=depth)
    t2 = time.perf_counter()
    if recommended.shape[1] < depth:  # a catalogue smaller than K: the curves stay flat beyond it
        recommended = np.pad(recommended, ((0, 0), (0, depth - recommended.shape[1])), constant_values=-1)
    hits, n_relevant = data.truth.hits(recommended)
    metrics = ranking_metrics(recommended, hits, n_relevant, cfg.k, model.n_articles)
    nan = float("nan")
    binary = {"auc": nan, "ap": nan, "accuracy": nan, "f1": nan}
    if data.pairs is not None and data.pairs.height:
        scores = model.score(data.pairs["customer_index"].to_numpy(), data.pairs["article_index"].to_numpy())
        binary = binary_metrics(data.pairs["label"].to_numpy(), to_probability(scores, model.score_kind),
                                0.5 if threshold is None else threshold)
    recall = recall_at_k_curve(hits, n_relevant)
    metrics[f"recall@{depth}"] = float(recall[-1])  # a retrieval stage's reach: what a ranker could reorder
    # how sure the MAP@k is (customers resampled), and how it splits between customers with and without history
    ap = np.zeros(len(data.customers))
    bought = n_relevant > 0
    ap[bought] = average_precision_curve(hits[bought, :cfg.k], n_relevant[bought])[:, -1]
    cold = model.is_cold(data.customers)
    low, high = bootstrap_interval(ap[bought])
    segments = {"map_ci95": [low, high], "warm_customers": int((bought & ~cold).sum()),
                "map_warm": float(ap[bought & ~cold].mean()) if (bought & ~cold).any() else None,
                "cold_customers": int((bought & cold).sum()),
                "map_cold": float(ap[bought & cold].mean()) if (bought & cold).any() else None}
    return {
        "metrics": metrics | binary,
        "curves": {"map": map_at_k_curve(hits, n_relevant).tolist(), "recall": recall.tolist()},
        "top_k": recommended[:, :cfg.k],
        "ap": ap,  # per scored customer, for paired comparisons between models
        "details": {"repr": repr(model), "fit_s": round(t1 - t0, 3), "recommend_s": round(t2 - t1, 3),
                    "cold_start_customers": int(cold.sum()),
                    "score_mapping": model.score_kind, "threshold": 0.5 if threshold is None else threshold,
                    "threshold_from": "fixed" if threshold is None else "validation pairs", **segments},
    }


def model_list(cfg: Config) -> list[str]:
    """cfg.evaluate.models, plus each trained model (`gnn`, `reference`) whose folder holds a model.pt."""
    names = list(dict.fromkeys(cfg.evaluate.models))
    for name, folder in TRAINED.items():
        if name not in names and A.has_checkpoint(A.step_dir(cfg.workdir, folder)):
            manifest = A.read_manifest(A.step_dir(cfg.workdir, folder)) or {}
            if name == "ranker-only" and "ranker_only" not in (manifest.get("ranker") or {}):
                continue  # a model trained before the ranker-only fit
            names.append(name)
    for name in names:
        model_class(name)  # unknown names fail before any data is read
    return names


def run(cfg: Config, inp: Path | None = None, out: Path | None = None, force: bool = False) -> Path:
    """Evaluate every model on cfg.evaluate.window; returns the evaluate/ folder."""
    started = time.perf_counter()
    split = Path(inp) if inp else A.step_dir(cfg.workdir, A.SPLIT)
    tables = A.step_dir(cfg.workdir, A.TABLES)
    out = Path(out) if out else A.step_dir(cfg.workdir, A.EVALUATE)
    A.require(split, [A.HISTORY_PARQUET, A.VALIDATION_PARQUET, A.TEST_PARQUET], A.SPLIT)
    A.require(tables, [A.CUSTOMERS_PARQUET, A.ARTICLES_PARQUET], A.TABLES)
    A.check_lineage([tables, A.step_dir(cfg.workdir, A.GRAPH), split])  # tables -> graph -> split fit together
    names = model_list(cfg)
    inputs = [split, tables / A.CUSTOMERS_PARQUET, tables / A.ARTICLES_PARQUET]
    inputs += [A.step_dir(cfg.workdir, TRAINED[n]) for n in names if n in TRAINED]
    step_config = cfg.section("evaluate") | {"models": names}
    if A.skip_if_current(out, "evaluate", step_config, inputs, force):
        return out

    data = load_window(split, tables, cfg.evaluate.window)
    validation = None  # the window that chooses each model's accuracy and F1 cut
    if cfg.evaluate.threshold == "validation" and data.name == "test" and data.pairs is not None:
        validation = load_window(split, tables, "validation")
        validation = validation if validation.pairs is not None and validation.pairs.height else None
    results: dict[str, dict[str, Any]] = {}
    with progress(transient=True, unit="models") as bar:
        task = bar.add_task("evaluate", total=len(names))
        for name in names:
            bar.update(task, description=f"evaluate: {name} (fit, rank {len(data.customers):,} customers, score pairs)")
            threshold = choose_threshold(create_model(name, cfg), validation) if validation is not None else None
            results[name] = evaluate_model(create_model(name, cfg), data, cfg.evaluate, threshold)
            r = results[name]
            info(f"  {name}: map@{cfg.evaluate.k} {r['metrics'][f'map@{cfg.evaluate.k}']:.5f} "
                 f"(fit {r['details']['fit_s']:.1f}s, rank {r['details']['recommend_s']:.1f}s)")
            bar.advance(task)
    chosen = auto_model(cfg, names)
    if chosen is not None:
        results[AUTO_ROW] = results[chosen] | {"details": results[chosen]["details"] | {"answers_with": chosen}}
    headline = _headline(results, cfg.evaluate.k)

    with A.StepOutput(out, "evaluate", cfg.to_dict(), step_config, inputs, started=started) as so:
        metrics = {
            "split": data.split,
            "k": cfg.evaluate.k,
            "models": {n: _finite(r["metrics"]) for n, r in results.items()},
            "headline": headline,
            "details": {n: r["details"] for n, r in results.items()},
            "curves": {n: r["curves"] for n, r in results.items()},
        }
        A.atomic_write_text(so.dir / A.METRICS_JSON, json.dumps(metrics, indent=2) + "\n")
        popularity = article_sales(data.seen)
        _plots(so.dir, results, popularity, data, cfg.evaluate.k)
        A.atomic_write_text(so.dir / A.REPORT_MD, _report(metrics, data, results, _settings(cfg, names)))
    for line in _headline_lines(headline, cfg.evaluate.k):
        info(line)
        so.rows = {"scored_customers": len(data.customers), "models": len(names),
                   "pairs": data.pairs.height if data.pairs is not None else 0}
    return out


def auto_model(cfg: Config, names: list[str]) -> str | None:
    """The model `recommend.model = auto` answers with, where it is among the evaluated models (None otherwise)."""
    from hmgnn.registry import auto_choice

    folder = A.step_dir(cfg.workdir, A.MODEL)
    if not A.has_checkpoint(folder):
        return None
    chosen = auto_choice(folder)
    return chosen if chosen in names else None


def _headline(results: dict[str, dict[str, Any]], k: int) -> dict[str, Any]:
    """Which model won, its ratio to the best baseline, and the GNN's contribution (`gnn` / `ranker-only`), each
    ratio with a paired 95% bootstrap interval over the scored customers."""
    key = f"map@{k}"
    maps = {n: r["metrics"][key] for n, r in results.items()}
    out: dict[str, Any] = {"winner": max((n for n in maps if n != AUTO_ROW), key=lambda n: maps[n], default=None)}
    baselines = [n for n in BASELINES if n in maps]
    if baselines:
        out["best_baseline"] = max(baselines, key=lambda n: maps[n])

    def ratio(a: str, b: str) -> dict[str, Any]:
        low, high = bootstrap_ratio(results[a]["ap"], results[b]["ap"])
        return {"ratio": maps[a] / max(maps[b], 1e-12), "ci95": [low, high],
                "above_in_customers": int((results[a]["ap"] > results[b]["ap"]).sum()),
                "below_in_customers": int((results[a]["ap"] < results[b]["ap"]).sum())}

    for model in ("gnn", AUTO_ROW, "gnn-retrieval"):
        if model in results and baselines:
            out[f"{model}_vs_best_baseline"] = ratio(model, out["best_baseline"])
    if "gnn" in results and "ranker-only" in results:
        out["gnn_vs_ranker_only"] = ratio("gnn", "ranker-only")
    if "gnn" in results and "als" in results:
        out["gnn_vs_als"] = ratio("gnn", "als")
    for peer in ("rp3beta", "ease", "als"):
        if "gnn-retrieval" in results and peer in results:
            out[f"gnn-retrieval_vs_{peer}"] = ratio("gnn-retrieval", peer)
    if AUTO_ROW in results:
        out["auto_answers_with"] = results[AUTO_ROW]["details"]["answers_with"]
    return out


def _headline_lines(h: dict[str, Any], k: int) -> list[str]:
    """The headline in sentences: the report's first paragraph and evaluate's last lines."""
    if not h.get("winner"):
        return []

    def said(key: str, a: str, b: str) -> str:
        r = h[key]
        return f"{a} / {b} {r['ratio']:.3f}x (95% interval {r['ci95'][0]:.3f}..{r['ci95'][1]:.3f})"

    lines = [f"Winner on MAP@{k}: {h['winner']}."]
    if "gnn_vs_ranker_only" in h:
        lines.append("The GNN's contribution: " + said("gnn_vs_ranker_only", "gnn", "ranker-only") +
                     " — the same ranker without the GNN's candidates and features.")
    if "gnn_vs_best_baseline" in h:
        lines.append("Against the best baseline: " + said("gnn_vs_best_baseline", "gnn", h["best_baseline"]) + ".")
    if "auto_answers_with" in h:
        lines.append(f"What a user gets by default (`recommend.model = auto`): {h['auto_answers_with']}"
                     + (f", {h['auto_vs_best_baseline']['ratio']:.3f}x the best baseline."
                        if "auto_vs_best_baseline" in h else "."))
    peers = [said(key, "gnn-retrieval", key.split("_vs_")[1]) for key in h if key.startswith("gnn-retrieval_vs_")
             and key != "gnn-retrieval_vs_best_baseline"]
    if peers:
        lines.append("The GNN alone: " + "; ".join(peers) + ".")
    return lines


def _finite(values: dict[str, float]) -> dict[str, float | None]:
    # JSON has no NaN: a metric that cannot be computed is null
    return {k: (None if isinstance(v, float) and math.isnan(v) else v) for k, v in values.items()}


def _plots(folder: Path, results: dict[str, dict[str, Any]], popularity: np.ndarray, data: ScoredWindow, k: int) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    for key, file, label in (("map", MAP_PLOT, "MAP@K"), ("recall", RECALL_PLOT, "Recall@K")):
        fig, ax = plt.subplots(figsize=(7, 4.5))
        for name, r in results.items():
            if name == AUTO_ROW:
                continue  # the same curve as the model it answers with
            curve = r["curves"][key]
            ax.plot(np.arange(1, len(curve) + 1), curve, label=name, color=model_colour(name))
        ax.axvline(k, color="grey", lw=0.8, ls=":")
        ax.annotate(f"K = {k}", (k, 0), xytext=(3, 3), textcoords="offset points", color="grey", fontsize=8)
        ax.set(xlabel="K (articles recommended)", ylabel=label, title=f"{label}, {data.name} window")
        ax.grid(alpha=0.3)
        # the curves rise from K = 1: the legend goes where they are not (lower right)
        ax.legend(loc="lower right", fontsize=8)
        fig.tight_layout()
        fig.savefig(folder / file, dpi=110)
        plt.close(fig)

    # how mainstream each model's top-k is, against what customers actually bought
    fig, ax = plt.subplots(figsize=(7, 4.5))
    q = np.linspace(0, 1, 201)
    series = {name: r["top_k"][r["top_k"] >= 0] for name, r in results.items() if name != AUTO_ROW}
    series["bought (truth)"] = data.truth.bought_articles
    for name, articles in series.items():
        if len(articles):
            values = np.quantile(np.log10(1 + popularity[articles]), q)
            ax.plot(values, q, label=name, lw=2.5 if name == "bought (truth)" else 1.5,
                    color="black" if name == "bought (truth)" else model_colour(name))
    ax.set(xlabel="log10(1 + purchases of the article before the window)", ylabel="share of articles at or below",
           title=f"Popularity of recommended (top {k}) vs bought articles")
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(folder / POPULARITY_PLOT, dpi=110)
    plt.close(fig)


def _settings(cfg: Config, names: list[str]) -> list[str]:
    """The settings behind the numbers, in words (report.md's second paragraph). The gnn is described as it was
    trained (`trained_settings`: its model folder's manifest), not by the config evaluate runs with."""
    sp = cfg.sample
    lines = [f"Settings: seed {cfg.seed}; test window {sp.test_days} days, validation window {sp.val_days} days "
             f"before it."]
    if "gnn" in names:
        t, r, fitted = trained_settings(A.step_dir(cfg.workdir, A.MODEL))
        trees = (f"{fitted['trees']} trees of {fitted['leaves']} leaves, as many as early stopping on held-out "
                 f"label customers kept of at most {r.trees}" if fitted.get("leaves") is not None else
                 f"{fitted['trees']} trees, fit again by `hmgnn update --refit-ranker`" if "trees" in fitted else
                 f"at most {r.trees} trees, as many as early stopping on held-out label customers keeps")
        lines.append(f"The gnn: a {t.layers}-layer GraphSAGE of width {t.hidden} ({t.loss} loss, "
                     f"{'with' if t.id_embeddings else 'without'} ID embeddings, up to {t.epochs} epochs with "
                     f"early stopping on the validation window, refit {t.refit}), whose top {r.gnn_candidates} "
                     f"articles join the customer's bought articles ({r.bought_candidates}), other colours "
                     f"({r.variant_candidates}), bestsellers ({r.popular_candidates}), trending "
                     f"({r.trending_candidates}) and random-walk neighbours ({r.walk_candidates}) as candidates, "
                     f"ranked by LightGBM ({r.objective}, {trees}) trained on label windows before the test "
                     f"(model/ranker.json lists them); ranker-only is the same ranker fit without the GNN's "
                     f"candidates and features.")
    return [" ".join(lines), ""]


def trained_settings(folder: Path) -> tuple[TrainConfig, RankerConfig, dict[str, Any]]:
    """How the model in `folder` was trained, from its manifest: the `[train]` (resolved for its recipe) and
    `[ranker]` settings `hmgnn train` ran with, and its ranker as fitted (`trees`, `leaves`; after
    `hmgnn update --refit-ranker`, the newest refit's `trees`). A setting the manifest lacks is the default."""
    manifest = A.read_manifest(folder) or {}
    config = manifest.get("config") if isinstance(manifest.get("config"), dict) else {}

    def recorded(cls: type, section: str) -> Any:
        values = config.get(section) if isinstance(config.get(section), dict) else {}
        known = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in values.items() if k in known})

    fitted = dict(manifest.get("ranker") or {}) if isinstance(manifest.get("ranker"), dict) else {}
    for update in manifest.get("updates") or []:
        if isinstance(update, dict) and isinstance(update.get("ranker"), dict) and "trees" in update["ranker"]:
            fitted = {"trees": update["ranker"]["trees"]}  # refit on the newest window: its early stopping is gone
    return recorded(TrainConfig, "train").resolved(), recorded(RankerConfig, "ranker"), fitted


def _report(metrics: dict[str, Any], data: ScoredWindow, results: dict[str, dict[str, Any]],
            settings: list[str] | None = None) -> str:
    settings = settings or []
    k = metrics["k"]
    s = metrics["split"]
    names = list(metrics["models"])
    cols = list(next(iter(metrics["models"].values())))
    fmt = (lambda v: "n/a" if v is None else f"{v:.5f}")
    lines = [
        f"# Evaluation: the {data.name} window",
        "",
        *([" ".join(_headline_lines(metrics["headline"], k)), ""] if metrics.get("headline", {}).get("winner") else []),
        f"Models are fit on every purchase up to {s['as_of']} and scored on {s['scored_start']} .. {s['scored_end']}: "
        f"{s['scored_customers']:,} customers with at least one purchase in the window, every one of the "
        f"{data.seen.n_articles:,} articles ranked (no sampling).",
        "",
        *settings,
        "| model | " + " | ".join(cols) + " |",
        "|---|" + "---|" * len(cols),
        *(f"| {n} | " + " | ".join(fmt(metrics["models"][n][c]) for c in cols) + " |" for n in names),
        "",
        f"## How sure: MAP@{k} with a 95% interval, and by customer history",
        "",
        f"One window of customers is a sample: the interval resamples them (1,000 bootstrap rounds), so two models "
        f"whose intervals overlap widely are not told apart by this window. Warm customers have a purchase before "
        f"the window and get each model's own ranking; cold ones get the age-band fallback.",
        "",
        f"| model | MAP@{k} | 95% interval | warm customers | MAP@{k} warm | cold customers | MAP@{k} cold |",
        "|---|---|---|---|---|---|---|",
        *(f"| {n} | {fmt(metrics['models'][n][f'map@{k}'])} | {fmt(results[n]['details']['map_ci95'][0])} .. "
          f"{fmt(results[n]['details']['map_ci95'][1])} | {results[n]['details']['warm_customers']:,} | "
          f"{fmt(results[n]['details']['map_warm'])} | {results[n]['details']['cold_customers']:,} | "
          f"{fmt(results[n]['details']['map_cold'])} |" for n in names),
        "",
        "## Definitions",
        f"- **map@{k}** as Kaggle scored it: per customer AP@{k} = (1 / min(#distinct articles bought, {k})) x "
        f"the sum of precision@i over the ranks i <= {k} that hit; the mean over the scored customers.",
        f"- **recall@{k}**: share of a customer's distinct bought articles in the top {k}; **hit@{k}**: share of "
        f"customers with at least one; **precision@{k}**: hits / {k}; **ndcg@{k}**: binary gains, log2 discount; "
        f"**coverage@{k}**: share of all articles in anybody's top {k}.",
    ]
    if data.pairs is not None:
        share = float(data.pairs["label"].mean()) if data.pairs.height else 0.0
        lines.append(f"- **auc, ap, accuracy, f1** (scikit-learn) on the {data.pairs.height:,} fixed pairs of "
                     f"split/{data.pairs_file} with kind positive or uniform ({share:.1%} positive); accuracy and "
                     "F1 predict bought where the mapped probability reaches a cut: "
                     + ("each model's cut with the best F1 on the validation window's pairs (the model fit as of "
                        "that window), shown below" if any(results[n]["details"].get("threshold_from") ==
                                                            "validation pairs" for n in names)
                        else "0.5")
                     + ". Scores were mapped to (0, 1) as follows:")
        mapped: dict[str, list[str]] = {}  # one sentence per mapping, naming the models that share it
        for n in names:
            mapped.setdefault(results[n]["details"]["score_mapping"], []).append(n)
        for kind, group in mapped.items():
            lines.append(f"  - {', '.join(group)}: {SCORE_MAPPING.get(kind, kind)}")
        lines.append("  - cuts: " + ", ".join(f"{n} {results[n]['details'].get('threshold', 0.5):.4f}"
                                             for n in names))
    else:
        lines.append(f"- The binary metrics are n/a: split/ holds no {PAIRS[data.name]}.")
    lines += ["", "## Models", ""]
    for n in names:
        d = results[n]["details"]
        lines.append(f"- {n}: `{d['repr']}`; fit {d['fit_s']:.2f} s, ranking {d['recommend_s']:.2f} s; "
                     f"{d['cold_start_customers']:,} scored customers had no history and got the age-band "
                     "bestsellers fallback")
    lines += ["", "## Plots", "", f"![MAP@K]({MAP_PLOT})", "", f"![Recall@K]({RECALL_PLOT})", "",
              f"![Popularity of recommended vs bought articles]({POPULARITY_PLOT})", ""]
    return "\n".join(lines)


def metrics_table(folder: Path):
    """The metrics of evaluate/metrics.json as a rich table, one row per model."""
    from rich import box
    from rich.table import Table

    metrics = json.loads((Path(folder) / A.METRICS_JSON).read_text())
    models = metrics["models"]
    cols = list(next(iter(models.values()))) if models else []
    table = Table(title=f"{metrics['split'].get('window', 'test')} window, "
                        f"{metrics['split'].get('scored_customers', 0):,} customers", box=box.SIMPLE_HEAD)
    table.add_column("model", style="bold")
    for c in cols:
        table.add_column(c, justify="right")
    best = {c: max((v[c] for v in models.values() if v[c] is not None), default=None) for c in cols}
    for name, values in models.items():
        cells = []
        for c in cols:
            v = values[c]
            text = "n/a" if v is None else f"{v:.4f}"
            cells.append(f"[green]{text}[/green]" if v is not None and v == best[c] and len(models) > 1 else text)
        table.add_row(name, *cells)
    return table

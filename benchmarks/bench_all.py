"""Every step of the pipeline at one scale, with its peers on the same split: wall time, CPU time, peak RSS,
throughput and MAP@12, as a table (printed, and written as bench_all.json and bench_all.md).

Usage:
    python benchmarks/bench_all.py --scale tiny|demo|seed|full [--workdir DIR] [--out DIR] [--skip-synth]
                                   [--raw DIR] [--steps STEP ...] [--als-factors 64 128] [--reference-epochs N]
                                   [--keep-previous] [--set KEY=VALUE ...]

    e.g. python benchmarks/bench_all.py --scale seed --workdir work/bench-seed --reference-epochs 2
         python benchmarks/bench_all.py --scale full --raw ~/hm-kaggle   (the real Kaggle CSVs, no synth)

Steps, in order (default: all):
    synth        hmgnn synth --force                        (skipped by --skip-synth or --raw)
    read-csv     polars' own pl.read_csv of raw/transactions_train.csv: the yardstick of ingest
    ingest       hmgnn ingest --force
    build-graph  hmgnn build-graph --force
    sample       hmgnn sample --force
    train        hmgnn train --force                        (the GNN, <workdir>/model)
    reference    hmgnn train --recipe reference --force     (<workdir>/reference)
    evaluate     hmgnn evaluate --force, every baseline + ALS (64 factors) + gnn + reference on the test window
    als          ALS with each other --als-factors value, scored by hmgnn.evaluate's own code on the same split
    recommend    hmgnn recommend --all --model gnn --out <workdir>/recommend/submission.csv

Each step runs as the real CLI in its own child process (`python -m hmgnn.cli ...`); its wall time, CPU time and
peak RSS come from os.wait4 on that child (ru_maxrss: the child's own high-water mark, exact, no sampling). Its
output goes to <out>/logs/<step>.log. Throughput comes from the manifest each step writes, MAP@12 from
evaluate/metrics.json. Ratios (hmgnn / peer) compare numbers from this one run: absolute times drift on a shared
machine, ratios much less. The targets are the full-scale ones; at smaller scales they are checked all the same
and a miss is flagged, but only a full-scale miss is a real one.

The default workdir is work/bench-<scale> (never a workdir somebody else uses), the default --out is
<workdir>/bench. The exit status is 1 when a step fails (a failed pipeline step stops the steps after it; a
failed peer does not), else 0. --keep-previous reruns some steps and keeps the earlier run's other rows (marked *).
The reference recipe is slow on CPU (seed scale, 2 shared cores: 8-12 min an epoch, up to 30 epochs):
--reference-epochs caps it; its time per epoch stays comparable.
"""

from __future__ import annotations

import argparse
import datetime as dt
import importlib.util
import json
import math
import os
import platform
import subprocess
import sys
import time
from importlib import metadata
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))  # run from a checkout without installing: hmgnn.config is all this process imports

CONFIGS = {"tiny": "configs/tiny.toml", "demo": "configs/demo.toml", "seed": "configs/seed-scale.toml",
           "full": "configs/full.toml"}
STEPS = ["synth", "read-csv", "ingest", "build-graph", "sample", "train", "reference", "evaluate", "als",
         "recommend"]
BASELINES = ["popular", "popular-new", "repurchase", "trending"]
GIB = 2 ** 30

# The targets (full scale).
INGEST_RATIO_MAX = 3.0
INGEST_RSS_MAX_GIB = 4.0
GRAPH_SAMPLE_MAX_S = 5 * 60
TRAIN_MAX_S = 2 * 3600
RECOMMEND_MAX_S = 5 * 60
STEP_RSS_MAX_GIB = 16.0

READ_CSV = """
import json, sys, time
import polars as pl
t = time.perf_counter()
df = pl.read_csv(sys.argv[1])
print(json.dumps({"read_s": time.perf_counter() - t, "rows": df.height}))
"""

ALS_PEER = """
import json, math, sys
from pathlib import Path
from hmgnn.config import load_config
from hmgnn.evaluate import evaluate_model, load_window
from hmgnn.models.als import ALSRecommender
config, workdir, overrides, factors = sys.argv[1], sys.argv[2], json.loads(sys.argv[3]), int(sys.argv[4])
cfg = load_config(config, overrides, workdir)
data = load_window(Path(cfg.workdir) / "split", Path(cfg.workdir) / "tables", cfg.evaluate.window)
# the shipped `als` model with another number of factors; everything else as `create_model("als", cfg)` builds it
r = evaluate_model(ALSRecommender(factors=factors, seed=cfg.seed), data, cfg.evaluate)
clean = {k: (None if isinstance(v, float) and math.isnan(v) else v) for k, v in r["metrics"].items()}
print(json.dumps({"metrics": clean, "details": r["details"], "scored_customers": len(data.customers)}))
"""


# ---- running and measuring one child ---------------------------------------------------------------------------
def run_child(cmd: list[str], log_path: Path) -> dict[str, Any]:
    """Run `cmd` in the repository root, output to `log_path`; wall, CPU, peak RSS (wait4) and the exit code."""
    log_path.parent.mkdir(parents=True, exist_ok=True)
    env = dict(os.environ, COLUMNS="160", PYTHONUNBUFFERED="1")
    with log_path.open("w") as log:
        log.write("$ " + " ".join(cmd) + "\n")
        log.flush()
        start = time.perf_counter()
        proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, cwd=ROOT, env=env)
        try:
            _, status, usage = os.wait4(proc.pid, 0)
        except KeyboardInterrupt:
            proc.kill()
            proc.wait()
            raise
        wall = time.perf_counter() - start
    proc.returncode = os.waitstatus_to_exitcode(status)  # reaped by wait4: tell Popen
    return {"wall_s": wall, "cpu_s": usage.ru_utime + usage.ru_stime,
            "peak_rss_gib": usage.ru_maxrss * 1024 / GIB,  # ru_maxrss is in KiB on Linux
            "rc": proc.returncode, "log": str(log_path)}


def last_json_line(log_path: Path) -> dict[str, Any]:
    for line in reversed(log_path.read_text().splitlines()):
        if line.startswith("{"):
            return json.loads(line)
    return {}


def tail(path: Path, lines: int = 15) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return ""


def read_json(path: Path) -> dict[str, Any] | None:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


def train_log(folder: Path) -> list[dict[str, float]]:
    """Rows of <folder>/train_log.csv (epoch, loss, val_map@12, seconds); empty when absent."""
    import csv

    try:
        with (folder / "train_log.csv").open() as f:
            return [{k: float(v) if v != "" else None for k, v in row.items()} for row in csv.DictReader(f)]
    except (OSError, ValueError):
        return []


# ---- the machine ---------------------------------------------------------------------------------------------------
def git_commit() -> str | None:
    """The checked-out commit, read from .git without running git."""
    git = ROOT / ".git"
    try:
        if git.is_file():  # a worktree: "gitdir: ..."
            git = (ROOT / git.read_text().split(":", 1)[1].strip()).resolve()
        head = (git / "HEAD").read_text().strip()
        if not head.startswith("ref:"):
            return head
        ref = head.split(":", 1)[1].strip()
        bases = [git]
        if (git / "commondir").is_file():  # a worktree keeps its refs in the main repository
            bases.append((git / (git / "commondir").read_text().strip()).resolve())
        for base in bases:
            if (base / ref).is_file():
                return (base / ref).read_text().strip()
            if (base / "packed-refs").is_file():
                for line in (base / "packed-refs").read_text().splitlines():
                    if line.endswith(" " + ref):
                        return line.split()[0]
        return f"{ref} (no commit yet)"
    except OSError:
        return None


def machine() -> dict[str, Any]:
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    ram_gib = None
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                ram_gib = int(line.split()[1]) * 1024 / GIB
    except OSError:
        pass
    versions = {}
    for pkg in ("hmgnn", "polars", "torch", "torch_geometric", "implicit", "numpy"):
        try:
            versions[pkg] = metadata.version(pkg)
        except metadata.PackageNotFoundError:
            pass
    return {"cpu": cpu, "cores": os.cpu_count(),
            "cores_usable": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count(),
            "ram_gib": round(ram_gib, 1) if ram_gib else None, "os": platform.platform(),
            "python": platform.python_version(), "packages": versions, "git_commit": git_commit(),
            "date": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")}


# ---- formatting ----------------------------------------------------------------------------------------------------
def fmt_s(s: float | None) -> str:
    if s is None:
        return "-"
    if s < 100:
        return f"{s:.2f} s" if s < 10 else f"{s:.1f} s"
    if s < 3600:
        return f"{s:.0f} s ({s / 60:.1f} min)"
    return f"{s:.0f} s ({s / 3600:.2f} h)"


def fmt_rate(n: float | None, unit: str) -> str:
    if n is None:
        return "-"
    for size, suffix in ((1e6, "M"), (1e3, "k")):
        if n >= size:
            return f"{n / size:.2f}{suffix} {unit}/s"
    return f"{n:.1f} {unit}/s"


def fmt_map(v: float | None) -> str:
    return "-" if v is None else f"{v:.5f}"


def fmt_ratio(v: float | None) -> str:
    return "-" if v is None or not math.isfinite(v) else f"{v:.2f}x"


def ratio(a: float | None, b: float | None) -> float | None:
    if a is None or b is None or b == 0:
        return None
    return a / b


# ---- the benchmark -------------------------------------------------------------------------------------------------
class Bench:
    def __init__(self, args: argparse.Namespace) -> None:
        from hmgnn.config import load_config

        self.args = args
        self.scale = args.scale
        self.config = CONFIGS[args.scale]
        # paths given on the command line are relative to the current folder; the defaults live in the checkout
        self.workdir = args.workdir.resolve() if args.workdir else ROOT / "work" / f"bench-{args.scale}"
        self.out = args.out.resolve() if args.out else self.workdir / "bench"
        self.raw = args.raw.resolve() if args.raw else self.workdir / "raw"
        cfg = load_config(ROOT / self.config, args.overrides, self.workdir)
        self.als_factors = list(dict.fromkeys(args.als_factors))
        if self.als_factors and importlib.util.find_spec("implicit") is None:
            print("implicit is not installed (pip install 'hmgnn[peers]'): no ALS peer", flush=True)
            self.als_factors = []
        # the config's models, every baseline and the shipped ALS (64 factors); evaluate adds gnn and reference
        # itself, each one whose model.pt exists
        models = [*cfg.evaluate.models, *BASELINES, *(["als"] if 64 in self.als_factors else [])]
        self.eval_models = [m for m in dict.fromkeys(models) if m not in ("gnn", "reference")
                            and (m != "als" or self.als_factors)]
        self.overrides = [*args.overrides]
        self.steps: dict[str, dict[str, Any]] = {}
        self.failed: str | None = None  # the pipeline step that failed: the steps after it are not run
        self.errors: list[str] = []  # every step that failed, peers included

    def hmgnn(self, step: str, *extra: str) -> list[str]:
        cmd = [sys.executable, "-m", "hmgnn.cli", step, "-c", str(ROOT / self.config), "-w", str(self.workdir)]
        for o in self.overrides:
            cmd += ["--set", o]
        return cmd + list(extra)

    def measure(self, name: str, cmd: list[str], peer: bool = False) -> dict[str, Any] | None:
        """Run one step's command and record it; a failed pipeline step (not a peer) stops the run."""
        print(f"[{time.strftime('%H:%M:%S')}] {name:<12} running (log: {self.out / 'logs' / (name + '.log')}; "
              f"load average {os.getloadavg()[0]:.1f})", flush=True)
        r = run_child(cmd, self.out / "logs" / f"{name}.log")
        r["load_avg_after"] = os.getloadavg()[0]
        self.steps[name] = r
        if r["rc"] != 0:
            self.errors.append(name)
            if not peer:
                self.failed = name
            print(f"  {name} FAILED (exit {r['rc']}) after {fmt_s(r['wall_s'])}:\n{tail(Path(r['log']))}", flush=True)
            return None
        print(f"  {name}: {fmt_s(r['wall_s'])} wall, {fmt_s(r['cpu_s'])} CPU, peak RSS {r['peak_rss_gib']:.2f} GiB",
              flush=True)
        return r

    def run(self, steps: list[str]) -> None:
        wd = self.workdir
        for step in steps:
            if self.failed:
                break
            if step == "synth":
                self.measure("synth", self.hmgnn("synth", "--force"))
            elif step == "read-csv":
                csv = self.raw / "transactions_train.csv"
                if not csv.is_file():
                    print(f"  read-csv: {csv} is not there (a zip or parquet raw folder?); skipped", flush=True)
                    continue
                r = self.measure("read-csv", [sys.executable, "-c", READ_CSV, str(csv)], peer=True)
                if r:
                    r.update(last_json_line(Path(r["log"])))
                    r["bytes"] = csv.stat().st_size
            elif step == "ingest":
                self.measure("ingest", self.hmgnn("ingest", "--raw", str(self.raw), "--force"))
            elif step == "build-graph":
                self.measure("build-graph", self.hmgnn("build-graph", "--force"))
            elif step == "sample":
                self.measure("sample", self.hmgnn("sample", "--force"))
            elif step == "train":
                self.measure("train", self.hmgnn("train", "--force"))
            elif step == "reference":
                cap = ["--set", f"train.epochs={self.args.reference_epochs}"] if self.args.reference_epochs else []
                if self.args.reference_minutes:
                    cap += ["--set", f"train.max_minutes={self.args.reference_minutes}"]
                self.measure("reference", self.hmgnn("train", "--recipe", "reference", "--force", *cap))
            elif step == "evaluate":
                models = "evaluate.models=[" + ",".join(f"'{m}'" for m in self.eval_models) + "]"
                self.measure("evaluate", self.hmgnn("evaluate", "--force", "--set", models))
            elif step == "als":
                for f in self.als_factors:
                    if f == 64:
                        continue  # the shipped `als`: scored inside the evaluate step
                    r = self.measure(f"als-{f}", [sys.executable, "-c", ALS_PEER, str(ROOT / self.config), str(wd),
                                                  json.dumps(self.overrides), str(f)], peer=True)
                    if r:
                        r.update(last_json_line(Path(r["log"])))
            elif step == "recommend":
                target = wd / "recommend" / "submission.csv"
                self.measure("recommend", self.hmgnn("recommend", "--all", "--model", "gnn", "--out", str(target)))

    # ---- collecting the results --------------------------------------------------------------------------------
    def collect(self) -> dict[str, Any]:
        wd = self.workdir
        s = self.steps
        manifests = {k: read_json(wd / k / "manifest.json") or {} for k in ("raw", "tables", "graph", "split", "model",
                                                                             "reference", "evaluate")}
        rows = {k: m.get("rows", {}) for k, m in manifests.items()}
        metrics = read_json(wd / "evaluate" / "metrics.json") or {}
        rows_table: list[dict[str, Any]] = []

        def row(name: str, label: str, throughput: float | None = None, unit: str = "", note: str = "",
                map12: float | None = None, **extra: Any) -> dict[str, Any]:
            r = s[name]
            if r["rc"] != 0:
                note = f"FAILED (exit {r['rc']}), see {r['log']}"
            entry = {"step": name, "label": label, "wall_s": r["wall_s"], "cpu_s": r["cpu_s"],
                     "peak_rss_gib": r["peak_rss_gib"], "rc": r["rc"], "throughput": throughput, "unit": unit,
                     "note": note, "map@12": map12, "load_avg_after": r["load_avg_after"], "misses": [],
                     "previous_run": r.get("previous_run"), **extra}
            rows_table.append(entry)
            return entry

        model_map = {n: v.get("map@12") for n, v in metrics.get("models", {}).items()}
        details = metrics.get("details", {})
        scored = metrics.get("split", {}).get("scored_customers")

        if "synth" in s:
            n = rows["raw"].get("transactions")
            row("synth", "hmgnn synth", ratio(n, s["synth"]["wall_s"]), "rows", f"{n:,} transactions" if n else "")
        if "read-csv" in s:
            r = s["read-csv"]
            row("read-csv", "polars read_csv (peer)", ratio(r.get("rows"), r.get("read_s")), "rows",
                f"read {fmt_s(r.get('read_s'))} in process, {r.get('bytes', 0) / 1e9:.2f} GB", read_s=r.get("read_s"))
        if "ingest" in s:
            n = rows["tables"].get("transactions")
            row("ingest", "hmgnn ingest", ratio(n, s["ingest"]["wall_s"]), "rows",
                f"{n:,} rows" if n else "",
                # the manifest's wall_time_s times only the writing of tables/, not the whole step
                manifest_wall_time_s=manifests["tables"].get("wall_time_s"))
        if "build-graph" in s:
            n = rows["graph"].get("edges")
            row("build-graph", "hmgnn build-graph", ratio(n, s["build-graph"]["wall_s"]), "edges",
                f"{n:,} edges" if n else "")
        if "sample" in s:
            n = sum(rows["split"].get(k, 0) for k in ("history", "validation", "test")) or None
            row("sample", "hmgnn sample", ratio(n, s["sample"]["wall_s"]), "rows",
                f"{n:,} purchases split" if n else "")
        for name, folder, label in (("train", "model", "hmgnn train (gnn)"),
                                    ("reference", "reference", "hmgnn train --recipe reference")):
            if name not in s:
                continue
            log = train_log(wd / folder)
            epochs = len(log)
            per_epoch = sum(e["seconds"] for e in log) / epochs if epochs else None
            steps_per_epoch = (read_json(wd / folder / "manifest.json") or {}).get("steps_per_epoch")
            steps = int(sum(e.get("steps") or 0 for e in log))
            partial = bool(epochs and steps_per_epoch and steps and steps < epochs * steps_per_epoch)
            if partial:  # a time-capped run (train.max_minutes): seconds per step x steps per epoch
                per_epoch = sum(e["seconds"] for e in log) / steps * steps_per_epoch
            hist = rows["split"].get("history")
            # edges/s: history purchases (message passing + targets) processed per second of epochs
            done = steps / steps_per_epoch if partial else epochs  # epochs' worth of edges
            tput = ratio(hist * done, sum(e["seconds"] for e in log)) if hist and epochs else None
            detail = f"{epochs} epochs, {fmt_s(per_epoch)}/epoch" if epochs else ""
            if partial:
                detail = (f"{epochs} epoch(s) of {steps_per_epoch} steps, {steps} steps in all (time-capped), "
                          f"{fmt_s(per_epoch)}/epoch extrapolated")
            row(name, label, tput, "edges", detail,
                map12=model_map.get("gnn" if name == "train" else "reference"), epochs=epochs,
                s_per_epoch=per_epoch, epochs_s=sum(e["seconds"] for e in log) if epochs else None)
        if "evaluate" in s:
            n_models = len(metrics.get("models", {}))
            row("evaluate", "hmgnn evaluate", ratio((scored or 0) * n_models, s["evaluate"]["wall_s"]) if scored else None,
                "rankings", f"{n_models} models x {scored:,} customers" if scored else "")
        als: dict[int, dict[str, Any]] = {}
        if "als" in model_map:
            als[64] = {"map@12": model_map["als"], "fit_s": details.get("als", {}).get("fit_s"), "source": "evaluate"}
        for f in self.als_factors:
            r = s.get(f"als-{f}")
            if r and r["rc"] == 0 and "metrics" in r:
                als[f] = {"map@12": r["metrics"].get("map@12"), "fit_s": r["details"]["fit_s"],
                          "source": "in-process"}
                row(f"als-{f}", f"implicit ALS, {f} factors (peer)",
                    ratio(r.get("scored_customers"), r["details"]["recommend_s"]), "customers",
                    f"fit {fmt_s(r['details']['fit_s'])}, rank {fmt_s(r['details']['recommend_s'])}",
                    map12=r["metrics"].get("map@12"), fit_s=r["details"]["fit_s"])
        if "recommend" in s:
            n = rows["tables"].get("customers")
            row("recommend", "hmgnn recommend --all (gnn)", ratio(n, s["recommend"]["wall_s"]), "customers",
                f"{n:,} customers" if n else "")
        for name, r in s.items():  # a failed step still gets its row
            if r["rc"] != 0 and not any(e["step"] == name for e in rows_table):
                row(name, name)

        # ---- the models, on the same split, scored by the same evaluate code --------------------------------
        gnn_train_s = s["train"]["wall_s"] if "train" in s and s["train"]["rc"] == 0 else None
        models: list[dict[str, Any]] = []
        gnn_map = model_map.get("gnn")
        ref = next((e for e in rows_table if e["step"] == "reference"), None)
        gnn = next((e for e in rows_table if e["step"] == "train"), None)
        if gnn_map is not None:
            models.append({"model": "gnn (hmgnn)", "map@12": gnn_map, "train_s": gnn_train_s,
                           "s_per_epoch": gnn and gnn["s_per_epoch"], "map_ratio": 1.0})
        if "reference" in model_map:
            models.append({"model": "reference recipe", "map@12": model_map["reference"],
                           "train_s": ref and ref["wall_s"], "s_per_epoch": ref and ref["s_per_epoch"],
                           "map_ratio": ratio(gnn_map, model_map["reference"]),
                           "time_ratio": ratio(gnn_train_s, ref and ref["wall_s"]),
                           "epoch_ratio": ratio(gnn and gnn["s_per_epoch"], ref and ref["s_per_epoch"])})
        for f, a in sorted(als.items()):
            models.append({"model": f"ALS {f} factors, 15 iterations", "map@12": a["map@12"], "train_s": a["fit_s"],
                           "map_ratio": ratio(gnn_map, a["map@12"]), "time_ratio": ratio(gnn_train_s, a["fit_s"]),
                           "source": a["source"]})
        for b in [n for n in model_map if n not in ("gnn", "reference", "als")]:
            models.append({"model": b, "map@12": model_map[b], "train_s": details.get(b, {}).get("fit_s"),
                           "map_ratio": ratio(gnn_map, model_map[b]), "time_ratio": None})

        # ---- targets ----------------------------------------------------------------------------------------------
        targets: list[dict[str, Any]] = []

        def target(what: str, goal: str, measured: str, ok: bool | None, steps: list[str]) -> None:
            targets.append({"target": what, "goal": goal, "measured": measured, "ok": ok, "steps": steps})
            if ok is False:
                for e in rows_table:
                    if e["step"] in steps:
                        e["misses"].append(what)

        by = {e["step"]: e for e in rows_table}
        if "ingest" in by and "read-csv" in by:
            rr = ratio(by["ingest"]["wall_s"], by["read-csv"].get("read_s"))
            target("ingest time", f"<= {INGEST_RATIO_MAX:g}x polars read_csv", fmt_ratio(rr),
                   None if rr is None else rr <= INGEST_RATIO_MAX, ["ingest"])
        if "ingest" in by:
            v = by["ingest"]["peak_rss_gib"]
            target("ingest memory", f"<= {INGEST_RSS_MAX_GIB:g} GiB", f"{v:.2f} GiB", v <= INGEST_RSS_MAX_GIB, ["ingest"])
        if "build-graph" in by and "sample" in by:
            v = by["build-graph"]["wall_s"] + by["sample"]["wall_s"]
            target("build-graph + sample", f"<= {GRAPH_SAMPLE_MAX_S // 60} min", fmt_s(v), v <= GRAPH_SAMPLE_MAX_S,
                   ["build-graph", "sample"])
        if "train" in by:
            v = by["train"]["wall_s"]
            target("training (gnn)", f"<= {TRAIN_MAX_S // 3600} h", fmt_s(v), v <= TRAIN_MAX_S, ["train"])
        if "recommend" in by:
            v = by["recommend"]["wall_s"]
            target("recommend --all", f"<= {RECOMMEND_MAX_S // 60} min", fmt_s(v), v <= RECOMMEND_MAX_S, ["recommend"])
        hmgnn_steps = [e for e in rows_table if e["step"] != "read-csv" and not e["step"].startswith("als-")]
        if hmgnn_steps:
            worst = max(hmgnn_steps, key=lambda e: e["peak_rss_gib"])
            target("peak RSS of every step", f"<= {STEP_RSS_MAX_GIB:g} GiB",
                   f"{worst['peak_rss_gib']:.2f} GiB ({worst['step']})",
                   worst["peak_rss_gib"] <= STEP_RSS_MAX_GIB,
                   [e["step"] for e in hmgnn_steps if e["peak_rss_gib"] > STEP_RSS_MAX_GIB])
        if gnn_map is not None:
            peers = {m["model"]: m["map@12"] for m in models
                     if m["model"] not in ("gnn (hmgnn)", "reference recipe") and m["map@12"] is not None}
            if peers:
                best = max(peers, key=peers.get)
                target("GNN MAP@12 above ALS and every baseline", "gnn > best peer",
                       f"{gnn_map:.5f} vs {best} {peers[best]:.5f} ({fmt_ratio(ratio(gnn_map, peers[best]))})",
                       gnn_map > peers[best], ["train"])

        ratios = {}
        if "ingest" in by and "read-csv" in by:
            ratios["ingest / polars read_csv (wall of the whole ingest command / in-process read)"] = \
                ratio(by["ingest"]["wall_s"], by["read-csv"].get("read_s"))
            ratios["ingest / polars read_csv (both whole processes)"] = ratio(by["ingest"]["wall_s"],
                                                                               by["read-csv"]["wall_s"])
            ratios["ingest / polars read_csv (CPU time of both processes)"] = ratio(by["ingest"]["cpu_s"],
                                                                                     by["read-csv"]["cpu_s"])
        for m in models:
            if m["model"] == "gnn (hmgnn)":
                continue
            if m.get("time_ratio") is not None:
                ratios[f"gnn train step / {m['model']} {'train step' if 'reference' in m['model'] else 'fit'}"] = \
                    m["time_ratio"]
            if m.get("epoch_ratio") is not None:
                ratios[f"gnn time per epoch / {m['model']} time per epoch"] = m["epoch_ratio"]
        for m in models:
            if m["model"] != "gnn (hmgnn)" and m.get("map_ratio") is not None:
                ratios[f"gnn MAP@12 / {m['model']} MAP@12"] = m["map_ratio"]

        return {"scale": self.scale, "config": self.config, "workdir": str(self.workdir), "overrides": self.overrides,
                "reference_epochs": self.args.reference_epochs,
                "machine": machine(), "split": metrics.get("split"), "steps": rows_table, "models": models,
                "ratios": ratios, "targets": targets, "failed": self.failed, "errors": self.errors,
                "total_wall_s": sum(r["wall_s"] for r in s.values()), "raw_steps": s}


# ---- output ----------------------------------------------------------------------------------------------------------
def step_cells(e: dict[str, Any], scale: str) -> list[str]:
    miss = "MISS: " if scale == "full" else "miss (full-scale target): "
    mark = (miss + "; ".join(e["misses"])) if e["misses"] else ("FAILED" if e["rc"] else "ok")
    label = e["label"] + (" *" if e.get("previous_run") else "")
    return [label, fmt_s(e["wall_s"]), fmt_s(e["cpu_s"]), f"{e['peak_rss_gib']:.2f}",
            fmt_rate(e["throughput"], e["unit"]) if e["unit"] else "-", fmt_map(e["map@12"]), e["note"], mark]


STEP_HEAD = ["step", "wall", "CPU", "peak RSS GiB", "throughput", "MAP@12", "detail", "target"]
MODEL_HEAD = ["model", "MAP@12", "gnn / model MAP@12", "train or fit", "time per epoch", "gnn / model time"]
TARGET_HEAD = ["target (full scale)", "goal", "measured", "met"]


def model_cells(m: dict[str, Any]) -> list[str]:
    return [m["model"], fmt_map(m["map@12"]), fmt_ratio(m.get("map_ratio")), fmt_s(m.get("train_s")),
            fmt_s(m.get("s_per_epoch")), fmt_ratio(m.get("time_ratio"))]


def met(ok: bool | None, scale: str) -> str:
    if ok is None:
        return "n/a"
    return "yes" if ok else ("NO" if scale == "full" else "no (full-scale target)")


def markdown(res: dict[str, Any]) -> str:
    mc = res["machine"]

    def table(head: list[str], rows: list[list[str]]) -> list[str]:
        esc = lambda c: str(c).replace("|", "\\|")  # noqa: E731
        return ["| " + " | ".join(head) + " |", "|" + "---|" * len(head),
                *("| " + " | ".join(esc(c) for c in r) + " |" for r in rows)]

    lines = [f"# hmgnn benchmark: every step at `{res['scale']}` scale ({res['config']})", "",
             f"- machine: {mc['cpu']}, {mc['cores']} cores ({mc['cores_usable']} usable), {mc['ram_gib']} GiB RAM, "
             f"{mc['os']}, Python {mc['python']}",
             f"- packages: {', '.join(f'{k} {v}' for k, v in mc['packages'].items())}",
             f"- date: {mc['date']}; commit: {mc['git_commit']}",
             f"- workdir: {res['workdir']}" + (f"; overrides: {' '.join(res['overrides'])}" if res["overrides"] else ""),
             f"- total wall time of the measured steps: {fmt_s(res['total_wall_s'])}"]
    if res.get("split"):
        sp = res["split"]
        lines.append(f"- scored window: {sp.get('scored_start')} .. {sp.get('scored_end')}, "
                     f"{sp.get('scored_customers', 0):,} customers")
    if res["failed"]:
        lines.append(f"- **step `{res['failed']}` failed**; the steps after it were not run")
    for name in res["errors"]:
        if name != res["failed"]:
            lines.append(f"- **peer `{name}` failed** (see its log)")
    if res.get("reference_epochs"):
        lines.append(f"- the reference recipe was capped at {res['reference_epochs']} epochs (--reference-epochs): "
                     "its time per epoch is comparable, its MAP@12 is a capped run's")
    if any(e.get("previous_run") for e in res["steps"]):
        when = sorted({e["previous_run"] for e in res["steps"] if e.get("previous_run")})
        lines.append(f"- rows marked * were measured by an earlier run ({', '.join(when)}; --keep-previous): "
                     "ratios that use them mix two runs")
    loads = [e["load_avg_after"] for e in res["steps"] if not e.get("previous_run")]
    if loads:
        lines.append(f"- 1-minute load average: {res.get('load_avg_start', 0):.1f} at the start, "
                     f"{min(loads):.1f} .. {max(loads):.1f} after the steps ({mc['cores_usable']} usable cores)")
    lines += ["", "## Steps", "",
              "Each step is the real CLI in its own process: wall and CPU time and peak RSS of that process.", "",
              *table(STEP_HEAD, [step_cells(e, res["scale"]) for e in res["steps"]])]
    if res["models"]:
        lines += ["", "## Models on the same split (scored by `hmgnn evaluate`'s code)", "",
                  *table(MODEL_HEAD, [model_cells(m) for m in res["models"]])]
    if res["ratios"]:
        lines += ["", "## Ratios (hmgnn / peer, this run)", "",
                  *table(["ratio", "value"], [[k, fmt_ratio(v)] for k, v in res["ratios"].items()])]
    if res["targets"]:
        lines += ["", "## Targets", "",
                  *table(TARGET_HEAD, [[t["target"], t["goal"], t["measured"], met(t["ok"], res["scale"])]
                                       for t in res["targets"]])]
    lines += ["", "Notes: the targets are stated for full scale; at a smaller scale a miss is flagged but only "
              "indicative (process start-up dominates small steps). The gnn train time is the whole `hmgnn train` "
              "command (GNN epochs with validation each epoch, the refit where there is one, candidates and "
              "the ranker fit); the ALS time is `fit` alone as evaluate "
              "measures it (fit on history + validation). Time per epoch is the mean of train_log.csv's seconds "
              "(training and validation of one epoch). Throughputs are per second of the whole command, except "
              "train (history purchases x epochs per second of the epochs) and ALS (customers ranked per second).", ""]
    return "\n".join(lines)


def print_rich(res: dict[str, Any]) -> None:
    from rich import box
    from rich.console import Console
    from rich.markup import escape
    from rich.table import Table

    con = Console(width=None if sys.stdout.isatty() else 200)
    mc = res["machine"]
    t = Table(title=f"hmgnn, {res['scale']} scale: {mc['cpu']}, {mc['cores']} cores, {mc['ram_gib']} GiB, "
                    f"{mc['date']}, commit {str(mc['git_commit'])[:12]}", box=box.SIMPLE_HEAD)
    for h in STEP_HEAD:
        t.add_column(h, justify="right" if h in ("wall", "CPU", "peak RSS GiB", "throughput", "MAP@12") else "left")
    for e in res["steps"]:
        cells = [escape(c) for c in step_cells(e, res["scale"])]  # a path or a date in brackets is no markup
        if e["misses"] or e["rc"]:
            cells[-1] = f"[red]{cells[-1]}[/red]"
        t.add_row(*cells)
    previous = sorted({e["previous_run"] for e in res["steps"] if e.get("previous_run")})
    if previous:
        t.caption = f"* measured by an earlier run ({', '.join(previous)}; --keep-previous)"
    con.print(t)
    if res["models"]:
        t = Table(title="models on the same split", box=box.SIMPLE_HEAD)
        for h in MODEL_HEAD:
            t.add_column(h, justify="left" if h == "model" else "right")
        for m in res["models"]:
            t.add_row(*map(escape, model_cells(m)))
        con.print(t)
    if res["ratios"]:
        t = Table(title="ratios (hmgnn / peer, this run)", box=box.SIMPLE_HEAD)
        t.add_column("ratio")
        t.add_column("value", justify="right")
        for k, v in res["ratios"].items():
            t.add_row(escape(k), fmt_ratio(v))
        con.print(t)
    if res["targets"]:
        t = Table(title="targets", box=box.SIMPLE_HEAD)
        for h in TARGET_HEAD:
            t.add_column(h)
        for x in res["targets"]:
            m = met(x["ok"], res["scale"])
            t.add_row(*map(escape, (x["target"], x["goal"], x["measured"])),
                      f"[red]{m}[/red]" if x["ok"] is False else m)
        con.print(t)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0],
                                 epilog="\n".join(__doc__.splitlines()[1:]),
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--scale", choices=list(CONFIGS), required=True, help="which configs/*.toml to run")
    ap.add_argument("--workdir", type=Path, help="scratch workdir (default: work/bench-<scale>)")
    ap.add_argument("--out", type=Path, help="where bench_all.json, bench_all.md and logs/ go (default: <workdir>/bench)")
    ap.add_argument("--skip-synth", action="store_true", help="reuse <workdir>/raw instead of generating it")
    ap.add_argument("--raw", type=Path, help="ingest this raw folder (e.g. the Kaggle CSVs) instead; implies --skip-synth")
    ap.add_argument("--steps", nargs="+", choices=STEPS, help="run only these steps (the others' outputs must exist)")
    ap.add_argument("--als-factors", type=int, nargs="+", default=[64, 128],
                    help="ALS peers (15 iterations each); 64 is the shipped `als`, scored inside evaluate")
    ap.add_argument("--reference-epochs", type=int, metavar="N",
                    help="cap the reference recipe at N epochs (it is slow on CPU: 84 full-graph steps an epoch at "
                         "seed scale); its time per epoch stays comparable, its MAP@12 is then a capped run's")
    ap.add_argument("--reference-minutes", type=float, metavar="M",
                    help="cap the reference recipe's training at M minutes (train.max_minutes; at full scale one "
                         "epoch takes hours): its time per epoch is then extrapolated from the steps it ran")
    ap.add_argument("--set", dest="overrides", action="append", default=[],
                    help="config override passed to every step, e.g. --set train.epochs=5 (repeatable)")
    ap.add_argument("--keep-previous", action="store_true",
                    help="keep <out>/bench_all.json's measurements of the steps not run this time (e.g. to rerun "
                         "one failed step of a long run); the table marks them as from the earlier run")
    args = ap.parse_args()

    steps = [s for s in STEPS if s in (args.steps or STEPS)]
    if (args.skip_synth or args.raw) and "synth" in steps:
        steps.remove("synth")
    from hmgnn.errors import HmgnnError

    try:
        bench = Bench(args)
    except HmgnnError as exc:  # a bad --set: one line, as the CLI says it
        sys.exit(f"error: {exc}")
    if args.keep_previous:
        previous = read_json(bench.out / "bench_all.json") or {}
        when = (previous.get("machine") or {}).get("date")
        for name, r in (previous.get("raw_steps") or {}).items():
            step = "als" if name.startswith("als-") else name
            if step not in steps and r.get("rc") == 0:
                bench.steps[name] = r | {"previous_run": r.get("previous_run") or when}
    if args.raw and not args.raw.exists():
        sys.exit(f"--raw {args.raw} does not exist")
    if "synth" not in steps and "ingest" in steps and not bench.raw.exists():
        sys.exit(f"{bench.raw} does not exist: run with synth, or point --raw at a raw folder")
    bench.out.mkdir(parents=True, exist_ok=True)
    print(f"bench_all: {args.scale} scale ({bench.config}) in {bench.workdir}; steps: {' '.join(steps)}; "
          f"{os.cpu_count()} cores, load average {os.getloadavg()[0]:.1f}", flush=True)
    start, load_start = time.perf_counter(), os.getloadavg()[0]
    try:
        bench.run(steps)
    except KeyboardInterrupt:
        print("interrupted: writing what was measured", flush=True)
        bench.failed = bench.failed or "interrupted"
    res = bench.collect()
    res["bench_wall_s"] = time.perf_counter() - start
    res["load_avg_start"] = load_start
    (bench.out / "bench_all.json").write_text(json.dumps(res, indent=1, default=str) + "\n")
    (bench.out / "bench_all.md").write_text(markdown(res))
    print()
    print_rich(res)
    print(f"\nwrote {bench.out / 'bench_all.json'} and {bench.out / 'bench_all.md'} "
          f"(benchmark took {fmt_s(res['bench_wall_s'])})")
    sys.exit(1 if bench.failed or bench.errors else 0)


if __name__ == "__main__":
    main()

"""The built wheel on its own: build it, install it into a fresh venv, and run the pipeline from an empty folder
with no file of the repository in reach, then recommend from a copied model/ folder with the workdir deleted, and
add a later week to that copy with `hmgnn update` (a customer new in that week then gets personal answers).

    python benchmarks/wheel_check.py                      # the packaged demo config as it ships
    python benchmarks/wheel_check.py --customers 3000     # smaller: the catalogue and purchases follow it
    python benchmarks/wheel_check.py --keep               # keep the temporary folder to look at

Prints each stage's wall time and the wheel's and model folder's sizes; exits 1 at the first failure (with the
failing command's output). torch is pinned by the repository's constraints.txt (the CPU build on local disk), as
the README's install does; nothing else from the repository is used after the wheel is built.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
TIMES: list[tuple[str, float]] = []


NEW_WEEK = """
import datetime as dt, sys
from pathlib import Path
import polars as pl
folder, out, newcomer = Path(sys.argv[1]), Path(sys.argv[2]), sys.argv[3]
out.mkdir()
tx = pl.read_parquet(folder / "transactions.parquet", columns=["t_dat", "article_index"])
articles = pl.read_parquet(folder / "articles.parquet", columns=["article_index", "article_id"]).sort("article_index")
day = str(tx["t_dat"].max() + dt.timedelta(days=1))
top = tx.group_by("article_index").len().sort(["len", "article_index"], descending=[True, False])["article_index"][:2]
ids = [f"{articles['article_id'][int(a)]:010d}" for a in top]
pl.DataFrame({"customer_id": [newcomer], "FN": [1.0], "Active": [1.0], "club_member_status": ["ACTIVE"],
              "fashion_news_frequency": ["Regularly"], "age": [31], "postal_code": ["e" * 64]}
             ).write_csv(out / "customers.csv")
pl.DataFrame({"t_dat": [day, day], "customer_id": [newcomer, newcomer], "article_id": ids,
              "price": [0.03, 0.02], "sales_channel_id": [2, 2]}).write_csv(out / "transactions_train.csv")
"""
"""A later week's files in the Kaggle schema, written by the venv's own Python: a new customer buys the copied model
folder's two bestsellers the day after its last day (argv: the folder, the output folder, the customer id)."""


def run(stage: str, cmd: list[str], cwd: Path, env: dict[str, str] | None = None) -> str:
    """Run one command, record its wall time under `stage`; on failure print its output and exit 1."""
    started = time.perf_counter()
    proc = subprocess.run([str(c) for c in cmd], cwd=cwd, env=env, capture_output=True, text=True)
    seconds = time.perf_counter() - started
    TIMES.append((stage, seconds))
    if proc.returncode:
        print(f"FAILED {stage} (exit {proc.returncode}, {seconds:.1f} s): {' '.join(map(str, cmd))}\n"
              f"{proc.stdout[-4000:]}\n{proc.stderr[-4000:]}", file=sys.stderr)
        sys.exit(1)
    print(f"{stage:<34} {seconds:7.1f} s", flush=True)
    return proc.stdout


def check(ok: bool, what: str) -> None:
    if not ok:
        print(f"FAILED: {what}", file=sys.stderr)
        sys.exit(1)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--customers", type=int, help="synth.customers (articles and purchases follow it); "
                                                       "default: the demo config's own sizes")
    parser.add_argument("--keep", action="store_true", help="keep the temporary folder")
    args = parser.parse_args()

    tmp = Path(tempfile.mkdtemp(prefix="hmgnn-wheel-"))
    try:
        check_wheel(tmp, args.customers)
    finally:
        if args.keep:
            print(f"kept {tmp}")
        else:
            shutil.rmtree(tmp, ignore_errors=True)


def check_wheel(tmp: Path, customers: int | None) -> None:
    dist, venv, here, elsewhere = tmp / "dist", tmp / "venv", tmp / "empty", tmp / "elsewhere"
    here.mkdir()
    elsewhere.mkdir()

    # 1. the wheel (built from a clean copy of the source: no stale build/ of the checkout gets in, none is left
    # there), and a fresh venv with it (torch pinned to the CPU build, as the README's install)
    source = Path(shutil.copytree(ROOT, tmp / "source", ignore=shutil.ignore_patterns(
        ".git", ".venv", "work", "build", "dist", "*.egg-info", "__pycache__", ".pytest_cache")))
    run("build the wheel", [sys.executable, "-m", "pip", "wheel", source, "--no-deps", "--no-build-isolation",
                            "-w", dist, "--quiet"], cwd=tmp)
    shutil.rmtree(source)
    wheel = next(dist.glob("hmgnn-*.whl"))
    run("create a fresh venv", [sys.executable, "-m", "venv", venv], cwd=tmp)
    run("pip install the wheel", [venv / "bin" / "pip", "install", "--quiet", "-c", ROOT / "constraints.txt",
                                  wheel], cwd=tmp)

    # 2. the pipeline from an empty folder: no repository file in reach (no PYTHONPATH, the repository not the cwd)
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV", "HMGNN_DEBUG")}
    env["PATH"] = f"{venv / 'bin'}{os.pathsep}{env.get('PATH', '')}"
    python = venv / "bin" / "python"
    hmgnn = [venv / "bin" / "hmgnn"]
    where = run("import hmgnn (from the venv)", [python, "-c", "import hmgnn; print(hmgnn.__file__)"], here, env)
    check(where.strip().startswith(str(venv)) and str(ROOT) not in where, f"hmgnn imported from {where.strip()}")
    run("hmgnn init demo", [*hmgnn, "init", "demo"], here, env)
    check((here / "demo.toml").is_file(), "hmgnn init demo wrote no demo.toml")
    scale = ([] if customers is None else
             ["--set", f"synth.customers={customers}", "--set", "synth.articles=0", "--set", "synth.transactions=0"])
    for step in ("synth", "ingest", "build-graph", "sample", "train"):
        run(f"hmgnn {step} -c demo", [*hmgnn, step, "-c", "demo", *(scale if step == "synth" else [])], here, env)
    workdir = here / "work" / "demo"
    customer = run("pick a customer", [python, "-c", (
        "import polars as pl; t = pl.read_parquet('work/demo/tables/transactions.parquet', n_rows=1); "
        "c = pl.read_parquet('work/demo/tables/customers.parquet'); "
        "print(c['customer_id'][int(t['customer_index'][0])])")], here, env).strip()
    from_workdir = run("hmgnn recommend (workdir)", [*hmgnn, "recommend", "-c", "demo", "--customer-id", customer,
                                                     "--json"], here, env)
    # `recommend.model = auto` answers with the model train chose (the gnn, or on a small sample the baseline that
    # ranked its held-out label customers better): the installed package's own reading of the model folder
    chosen = run("train's auto choice", [python, "-c", "import sys; from hmgnn.registry import auto_choice; "
                                         "print(auto_choice(sys.argv[1]))", workdir / "model"], here, env).strip()
    answered = json.loads(from_workdir)["model"]
    check(answered == chosen, f"recommend answered with {answered!r}, not with {chosen!r}, the model that train chose")
    api = ("import hmgnn, sys; rec = hmgnn.load(sys.argv[1]); "
           "print(rec.recommend([sys.argv[2]], k=12).write_json())")
    api_workdir = run("hmgnn.load(workdir)", [python, "-c", api, workdir, customer], here, env)

    # 3. model/ copied elsewhere, the workdir deleted: the copy answers the same
    folder = Path(shutil.copytree(workdir / "model", elsewhere / "model"))
    shutil.rmtree(here / "work")
    from_folder = run("hmgnn recommend --model-dir (copy)", [*hmgnn, "recommend", "--model-dir", folder,
                                                            "--customer-id", customer, "--json"], elsewhere, env)
    check(from_folder == from_workdir, "the copied model folder answered differently from the workdir")
    api_folder = run("hmgnn.load(copy)", [python, "-c", api, folder, customer], elsewhere, env)
    check(api_folder == api_workdir, "hmgnn.load() of the copy answered differently from the workdir")

    # 4. a later week added to the copy by `hmgnn update`: a customer new in that week gets personal recommendations
    newcomer = "ab" * 32
    week = elsewhere / "new-week"
    run("write a new week (Kaggle schema)", [python, "-c", NEW_WEEK, folder, week, newcomer], elsewhere, env)
    # the gnn asked by name: on a small sample `recommend.model = auto` may answer with a baseline that won validation
    ask = [*hmgnn, "recommend", "--model-dir", folder, "--model", "gnn", "--customer-id", newcomer, "--json"]
    unknown = json.loads(run("recommend a newcomer (before)", ask, elsewhere, env))
    check(unknown["fallback"] is not None, "a customer not in the data got no fallback answer before the update")
    run("hmgnn update --model-dir (copy)", [*hmgnn, "update", "-c", "demo", "--model-dir", folder, "--raw", week],
        elsewhere, env)
    after = json.loads(run("recommend the newcomer (after)", ask, elsewhere, env))
    check(after["fallback"] is None and len(after["recommendations"]) == 12,
          f"after the update the newcomer got no personal answer: fallback {after['fallback']!r}")
    check(any("bought" in r["why"] for r in after["recommendations"]),
          "none of the newcomer's recommendations names what they bought in the new week")

    total = sum(seconds for _, seconds in TIMES)
    print(f"{'total':<34} {total:7.1f} s")
    print(f"wheel {wheel.name}: {wheel.stat().st_size:,} bytes")
    sizes = {p.name: p.stat().st_size for p in sorted(folder.iterdir()) if p.is_file()}
    print(f"model folder: {sum(sizes.values()):,} bytes: " + ", ".join(f"{n} {b:,}" for n, b in sizes.items()))
    print(f"recommendations from the copy equal the workdir's: {len(json.loads(from_folder)['recommendations'])} "
          f"articles for {customer[:16]}...; OK")


if __name__ == "__main__":
    main()

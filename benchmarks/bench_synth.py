"""Benchmark `hmgnn synth`: wall time, peak RSS and rows/s at a chosen scale (target at full scale: 15 min, 8 GiB).

Usage: python benchmarks/bench_synth.py [--scale tiny|seed|full] [--customers N --articles N --transactions N]
                                        [--workdir DIR] [--keep]
The step runs in a subprocess, so the peak RSS (getrusage RUSAGE_CHILDREN) is the step's own.
"""

from __future__ import annotations

import argparse
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

SCALES = {  # customers, articles, transactions (the shipped configs' sizes)
    "tiny": (600, 400, 14_000),
    "demo": (20_000, 6_000, 464_000),
    "seed": (100_000, 82_477, 2_327_067),
    "full": (1_371_980, 105_542, 31_788_324),
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scale", choices=sorted(SCALES), default="seed", help="a preset size (default: seed)")
    parser.add_argument("--customers", type=int, help="override the preset's customers")
    parser.add_argument("--articles", type=int, help="override the preset's articles")
    parser.add_argument("--transactions", type=int, help="override the preset's transactions")
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--workdir", type=Path, help="where raw/ is written (default: a temporary folder)")
    parser.add_argument("--keep", action="store_true", help="keep the output (always kept with --workdir)")
    args = parser.parse_args()

    customers, articles, transactions = SCALES[args.scale]
    customers = args.customers or customers
    articles = args.articles or articles
    transactions = args.transactions or transactions
    workdir = args.workdir or Path(tempfile.mkdtemp(prefix="bench_synth_"))
    cmd = [sys.executable, "-m", "hmgnn.cli", "synth", "--workdir", str(workdir), "--force",
           "--set", f"seed={args.seed}", "--set", f"synth.customers={customers}",
           "--set", f"synth.articles={articles}", "--set", f"synth.transactions={transactions}"]
    print(f"synth: {customers:,} customers, {articles:,} articles, {transactions:,} transactions -> {workdir}; "
          f"load average before: {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores", flush=True)
    try:
        start = time.perf_counter()
        proc = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        wall = time.perf_counter() - start
        if proc.returncode != 0:
            sys.exit(f"synth failed:\n{proc.stderr[-3000:]}")
        usage = resource.getrusage(resource.RUSAGE_CHILDREN)  # ru_maxrss is in KiB on Linux
        size = sum(p.stat().st_size for p in (workdir / "raw").glob("*.csv"))
        print(f"wall {wall:.1f} s, cpu {usage.ru_utime + usage.ru_stime:.1f} s, "
              f"peak RSS {usage.ru_maxrss / 2**20:.2f} GiB, {transactions / wall:,.0f} rows/s, "
              f"CSVs {size / 1e9:.2f} GB")
    finally:
        if args.workdir is None and not args.keep:
            shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    main()

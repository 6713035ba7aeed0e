"""Benchmark `hmgnn ingest` against polars' own `read_csv` of the same transactions file (target: ratio <= 3).

Usage: python benchmarks/bench_ingest.py --raw work/full/raw [--repeat 2] [--keep]
Each measurement runs in its own subprocess, so its peak RSS is its own; runs alternate to share machine noise.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

READ_CSV = """
import json, sys, time
import polars as pl
t = time.perf_counter()
df = pl.read_csv(sys.argv[1]) if sys.argv[1].endswith('.csv') else pl.read_parquet(sys.argv[1])
print(json.dumps({"read_s": time.perf_counter() - t, "rows": df.height}))
"""


def measure(cmd: list[str]) -> dict:
    """Run `cmd` under a fresh wrapper process; wall time, peak RSS (GiB) and its last stdout line as JSON."""
    wrapper = [sys.executable, __file__, "--measure", "--", *cmd]
    out = subprocess.run(wrapper, capture_output=True, text=True)
    if out.returncode != 0:
        sys.exit(f"failed: {' '.join(cmd)}\n{out.stderr[-2000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def _measure_child(cmd: list[str]) -> None:
    # RUSAGE_CHILDREN holds the largest child ever waited for: a fresh wrapper per command keeps it per command
    t = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True)
    wall = time.perf_counter() - t
    if proc.returncode != 0:
        sys.stderr.write(proc.stderr)
        sys.exit(proc.returncode)
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)  # ru_maxrss is in KiB on Linux
    lines = proc.stdout.strip().splitlines()
    inner = json.loads(lines[-1]) if lines and lines[-1].startswith("{") else {}
    print(json.dumps({"wall_s": wall, "cpu_s": usage.ru_utime + usage.ru_stime, "peak_rss_gib": usage.ru_maxrss / 2**20,
                      **inner}))


def main() -> None:
    if "--measure" in sys.argv:
        _measure_child(sys.argv[sys.argv.index("--") + 1:])
        return
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--raw", type=Path, required=True, help="raw folder (or competition zip) to ingest")
    parser.add_argument("--repeat", type=int, default=1, help="alternating runs of each (report the median)")
    parser.add_argument("--workdir", type=Path, default=None, help="where ingest writes tables/ (default: a temp dir)")
    parser.add_argument("--keep", action="store_true", help="keep the ingest output")
    args = parser.parse_args()

    from hmgnn.ingest import find_sources

    transactions = find_sources(args.raw)["transactions"]
    if transactions.member is not None:
        sys.exit("benchmark a folder with the transactions file itself, not a zip member")
    workdir = args.workdir or Path(tempfile.mkdtemp(prefix="bench_ingest_"))
    ingest_cmd = [sys.executable, "-m", "hmgnn.cli", "ingest", "--raw", str(args.raw), "--workdir", str(workdir),
                  "--force"]
    size_gb = transactions.path.stat().st_size / 1e9
    print(f"transactions: {transactions.path} ({size_gb:.2f} GB); load average before: "
          f"{os.getloadavg()[0]:.1f} on {os.cpu_count()} cores", flush=True)
    reads, ingests = [], []
    try:
        for i in range(args.repeat):
            reads.append(measure([sys.executable, "-c", READ_CSV, str(transactions.path)]))
            print(f"  run {i + 1}: polars read_csv {reads[-1]['read_s']:.2f} s "
                  f"(process: {reads[-1]['wall_s']:.2f} s wall, {reads[-1]['cpu_s']:.1f} s CPU, "
                  f"peak RSS {reads[-1]['peak_rss_gib']:.2f} GiB)", flush=True)
            ingests.append(measure(ingest_cmd))
            manifest = json.loads((workdir / "tables" / "manifest.json").read_text())
            ingests[-1]["step_s"] = manifest["wall_time_s"]
            ingests[-1]["rows"] = manifest["rows"]["transactions"]
            print(f"  run {i + 1}: hmgnn ingest   {ingests[-1]['wall_s']:.2f} s "
                  f"(in-step {ingests[-1]['step_s']:.2f} s, {ingests[-1]['cpu_s']:.1f} s CPU, "
                  f"peak RSS {ingests[-1]['peak_rss_gib']:.2f} GiB)", flush=True)
    finally:
        if not args.keep and args.workdir is None:
            shutil.rmtree(workdir, ignore_errors=True)

    read_s = statistics.median(r["read_s"] for r in reads)
    ingest_s = statistics.median(r["wall_s"] for r in ingests)
    print(f"rows:              {reads[0]['rows']:,} (ingest wrote {ingests[0]['rows']:,})")
    print(f"polars read_csv:   {read_s:.2f} s   peak RSS {max(r['peak_rss_gib'] for r in reads):.2f} GiB")
    print(f"hmgnn ingest:      {ingest_s:.2f} s   peak RSS {max(r['peak_rss_gib'] for r in ingests):.2f} GiB "
          f"(whole command, interpreter start included)")
    print(f"ratio:             {ingest_s / read_s:.2f}x   (target <= 3x, peak RSS <= 4 GiB)")
    cpu_ratio = statistics.median(r["cpu_s"] for r in ingests) / statistics.median(r["cpu_s"] for r in reads)
    print(f"CPU-time ratio:    {cpu_ratio:.2f}x   (less sensitive to other load on the machine)")
    print(f"load average after: {os.getloadavg()[0]:.1f}")


if __name__ == "__main__":
    main()

"""Load test of `hmgnn serve` on loopback: N requests from C concurrent clients over known customers.

Run: python benchmarks/bench_serve.py --workdir work/seed -c configs/seed-scale.toml [--requests 10000 --clients 8]. Prints figures, asserts nothing.
The client shares the machine with the server, so the figures depend on what else runs: the load average and the
CPU time per request of the client and of the server (where /proc exists) are printed with them.
"""

from __future__ import annotations

import argparse
import os
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx
import numpy as np
import polars as pl


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_server(workdir: Path, model: str, port: int, timeout: float, config: Path | None = None,
                 overrides: list[str] | None = None) -> subprocess.Popen:
    """`hmgnn serve` in a subprocess, access log off (it costs throughput); returns once /health answers."""
    cmd = [sys.executable, "-m", "hmgnn.cli", "serve", "--workdir", str(workdir), "--model", model,
           "--port", str(port), "--set", "serve.access_log=false", *(["-c", str(config)] if config else []),
           *(a for o in overrides or [] for a in ("--set", o))]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"server exited with code {proc.returncode}:\n{proc.stderr.read()[-2000:]}")
        try:
            if httpx.get(f"http://127.0.0.1:{port}/health", timeout=1).status_code == 200:
                return proc
        except httpx.TransportError:
            pass
        time.sleep(0.2)
    stop_server(proc)
    raise SystemExit(f"server did not answer /health within {timeout:.0f} s")


def stop_server(proc: subprocess.Popen) -> None:
    proc.terminate()
    try:
        proc.wait(10)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def cpu_seconds(pid: int) -> float | None:
    """User + system CPU time of a process so far (Linux /proc), None where that is not available."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return None
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def client(base: str, paths: list[str], latencies: list[float], errors: list[str], stop_at: float) -> None:
    with httpx.Client(base_url=base, timeout=10) as http:
        for path in paths:
            if time.monotonic() > stop_at:  # bounded in time as well as in count
                return
            start = time.perf_counter()
            try:
                r = http.get(path)
                ok = r.status_code == 200
            except httpx.HTTPError as exc:
                ok, r = False, exc
            latencies.append(time.perf_counter() - start)
            if not ok:
                errors.append(str(getattr(r, "status_code", r)))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--workdir", type=Path, required=True, help="A workdir with tables/ and (for gnn) model/.")
    parser.add_argument("--config", "-c", type=Path,
                        help="the run's config (e.g. configs/seed-scale.toml)")
    parser.add_argument("--model", default="gnn")
    parser.add_argument("--requests", type=int, default=10_000)
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument("--k", type=int, default=12)
    parser.add_argument("--similar-share", type=float, default=0.0,
                        help="Share of requests that ask for similar articles instead (gnn only).")
    parser.add_argument("--max-seconds", type=float, default=180, help="Stop sending after this long.")
    parser.add_argument("--startup-timeout", type=float, default=300)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                        help="A config override for the server, e.g. serve.keep_candidates=true (repeatable).")
    args = parser.parse_args()

    tables = args.workdir / "tables"
    customers = pl.read_parquet(tables / "customers.parquet", columns=["customer_id"])["customer_id"].to_numpy()
    articles = pl.read_parquet(tables / "articles.parquet", columns=["article_id"])["article_id"].to_numpy()
    rng = np.random.default_rng(args.seed)
    paths = [f"/recommendations/{c}?k={args.k}" for c in rng.choice(customers, args.requests)]
    for i in np.flatnonzero(rng.random(args.requests) < args.similar_share):
        paths[i] = f"/articles/{rng.choice(articles):010d}/similar?k={args.k}"

    port = free_port()
    base = f"http://127.0.0.1:{port}"
    t0 = time.perf_counter()
    proc = start_server(args.workdir, args.model, port, args.startup_timeout, args.config, args.overrides)
    startup = time.perf_counter() - t0
    try:
        health = httpx.get(f"{base}/health").json()
        warm: list[float] = []
        client(base, paths[:200], warm, [], time.monotonic() + 30)  # first requests pay for lazy imports
        latencies: list[float] = []
        errors: list[str] = []
        stop_at = time.monotonic() + args.max_seconds
        threads = [threading.Thread(target=client, args=(base, paths[i::args.clients], latencies, errors, stop_at))
                   for i in range(args.clients)]
        load_before, cpu_before, client_before = os.getloadavg()[0], cpu_seconds(proc.pid), time.process_time()
        start = time.perf_counter()
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        wall = time.perf_counter() - start
        load_after, cpu_after, client_after = os.getloadavg()[0], cpu_seconds(proc.pid), time.process_time()
    finally:
        stop_server(proc)

    lat = np.array(latencies) * 1e3
    print(f"model {health['model']}: {health['customers']:,} customers x {health['articles']:,} articles, "
          f"server up in {startup:.1f} s; {os.cpu_count()} CPUs" + (f"; {' '.join(args.overrides)}" if args.overrides else ""))
    print(f"{len(lat):,} requests from {args.clients} clients in {wall:.2f} s: {len(lat) / wall:,.0f} requests/s")
    print(f"latency ms: p50 {np.percentile(lat, 50):.2f}  p90 {np.percentile(lat, 90):.2f}  "
          f"p99 {np.percentile(lat, 99):.2f}  max {lat.max():.2f}")
    print(f"errors: {len(errors)}" + (f" (e.g. {sorted(set(errors))[:5]})" if errors else ""))
    server_cpu = f", server {(cpu_after - cpu_before) / len(lat) * 1e3:.2f}" \
        if cpu_before is not None and cpu_after is not None else ""
    print(f"CPU ms per request: client {(client_after - client_before) / len(lat) * 1e3:.2f}{server_cpu}; "
          f"1-minute load average {load_before:.1f} before, {load_after:.1f} after")


if __name__ == "__main__":
    main()

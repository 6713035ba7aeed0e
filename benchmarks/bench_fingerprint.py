"""Benchmark `artifacts.fingerprint` (blake2b of every byte) on a large file, and what it means for the full data.

Usage: python benchmarks/bench_fingerprint.py [--gb 2] [--repeat 3] [--dir /tmp]
Writes a file of random bytes (removed at the end), fingerprints it `--repeat` times (the first read may come from
disk, the others from the page cache) and extrapolates to the Kaggle CSVs (KAGGLE_BYTES), which `hmgnn ingest`
fingerprints on every run.
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

from hmgnn.artifacts import fingerprint

KAGGLE_BYTES = 3.75e9
"""The competition's CSVs: about 3.5 GB of transactions_train.csv (31.8M rows) and 0.25 GB of customers.csv and
articles.csv."""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--gb", type=float, default=2.0, help="size of the generated file, in GB")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--dir", default=tempfile.gettempdir(), help="where the file is written (and removed)")
    args = parser.parse_args()
    size = int(args.gb * 1e9)
    with tempfile.TemporaryDirectory(dir=args.dir) as folder:
        path = Path(folder) / "big.bin"
        block = os.urandom(1 << 24)
        with path.open("wb") as f:
            for start in range(0, size, len(block)):
                f.write(block[: size - start])
        for run in range(args.repeat):
            t = time.perf_counter()
            fingerprint(path)
            seconds = time.perf_counter() - t
            rate = size / seconds
            print(f"run {run + 1}: {size / 1e9:.2f} GB in {seconds:.2f} s = {rate / 1e6:,.0f} MB/s; the three Kaggle "
                  f"CSVs ({KAGGLE_BYTES / 1e9:.2f} GB): {KAGGLE_BYTES / rate:.1f} s")


if __name__ == "__main__":
    main()

"""Times `build-graph` and `sample` on a generated tables/ folder (default: the reference project's seed scale,
100,000 customers, ~82,000 articles, 2.3M purchases). Prints figures; asserts nothing.

    .venv/bin/python benchmarks/bench_graph_sample.py [--customers N --articles N --rows N --workdir DIR]
"""

from __future__ import annotations

import argparse
import resource
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
from tables_fixture import make_tables  # noqa: E402

from hmgnn import graph, sample  # noqa: E402
from hmgnn.config import Config, SampleConfig  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--customers", type=int, default=100_000)
    parser.add_argument("--articles", type=int, default=82_000)
    parser.add_argument("--rows", type=int, default=2_300_000)
    parser.add_argument("--workdir", type=Path, default=None)
    args = parser.parse_args()
    work = args.workdir or Path(tempfile.mkdtemp(prefix="hmgnn-bench-"))

    start = time.perf_counter()
    make_tables(work / "tables", args.customers, args.articles, args.rows, seed=0,
                start="2018-09-20", end="2020-09-22")
    print(f"tables generated   {time.perf_counter() - start:6.1f} s  ({work / 'tables'})")
    cfg = Config(workdir=str(work), sample=SampleConfig(popularity_negatives=True))
    for name, step in (("build-graph", graph), ("sample", sample)):
        start = time.perf_counter()
        step.run(cfg, force=True)
        print(f"{name:<18} {time.perf_counter() - start:6.1f} s")
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20
    print(f"peak RSS           {peak:6.2f} GiB")


if __name__ == "__main__":
    main()

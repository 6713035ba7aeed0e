"""Times one full-batch training step of the GNN recommender on a random bipartite purchase graph.

    python benchmarks/bench_gnn_step.py --scale seed               # the CSR model, then plain PyG SAGEConv
    python benchmarks/bench_gnn_step.py --scale custom --customers 20000 --articles 8000 --edges 300000

Each implementation runs in its own subprocess so that peak RSS is its own. Prints figures; asserts nothing.
"""

from __future__ import annotations

import argparse
import resource
import subprocess
import sys
import time

import torch

SCALES = {  # customers, articles, purchases
    "seed": (100_000, 82_477, 2_327_067),
    "full": (1_371_980, 105_542, 31_788_324),
}


def heavy_tailed(count: int, size: int, exponent: float, generator: torch.Generator) -> torch.Tensor:
    """``size`` node indices with Zipf-like popularity (rank ** -exponent), shuffled over the ids."""
    cdf = torch.cumsum(torch.arange(1, count + 1, dtype=torch.float64) ** -exponent, 0)
    cdf /= cdf[-1].clone()
    rank = torch.searchsorted(cdf, torch.rand(size, dtype=torch.float64, generator=generator))
    return torch.randperm(count, generator=generator)[rank.clamp_max(count - 1)]


def random_graph(customers: int, articles: int, edges: int, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.stack([heavy_tailed(customers, edges, 0.6, g), heavy_tailed(articles, edges, 0.9, g)])


def peak_rss_gib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20  # KiB on Linux


def run_one(args: argparse.Namespace) -> None:
    from torch_geometric.nn import HeteroConv, SAGEConv

    from hmgnn.models.gnn import HeteroSAGE
    from hmgnn.models.sparse import Adjacency

    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    device = torch.device(args.device)
    edge_index = random_graph(args.customers, args.articles, args.edges)
    model = HeteroSAGE(args.customers, args.articles, customer_channels=args.customer_features,
                       article_channels=args.article_features, hidden_channels=args.dim,
                       num_layers=args.layers).to(device)
    feats = {"customer_x": torch.randn(args.customers, args.customer_features, device=device),
             "article_x": torch.randn(args.articles, args.article_features, device=device)}

    start = time.perf_counter()
    if args.impl == "csr":
        adj = Adjacency.from_edge_index(edge_index.to(device), args.customers, args.articles)
        embed = lambda: model.embeddings(adj, **feats)  # noqa: E731
        built = f"{adj.num_edges:,} distinct edges"
    else:  # PyG SAGEConv over the raw edge_index, same input layer and weights layout
        buys, rev = ("customer", "buys", "article"), ("article", "rev_buys", "customer")
        convs = torch.nn.ModuleList(
            HeteroConv({buys: SAGEConv(args.dim, args.dim), rev: SAGEConv(args.dim, args.dim)}, aggr="sum")
            for _ in range(args.layers)).to(device)
        edges = {buys: edge_index.to(device), rev: edge_index.flip(0).to(device)}
        model.convs = convs  # so the optimizer below updates them

        def embed():
            x = {t: model._inputs(t, feats[f"{t}_x"], None) for t in ("customer", "article")}
            for i, conv in enumerate(convs):
                x = conv(x, edges)
                if i < args.layers - 1:
                    x = {k: v.relu() for k, v in x.items()}
            return x["customer"], x["article"]
        built = f"{edge_index.size(1):,} edges"
    build_s = time.perf_counter() - start

    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    g = torch.Generator().manual_seed(1)
    step_s, opt_s = [], []
    for step in range(args.warmup + args.steps):
        pos = torch.randint(0, args.edges, (args.batch,), generator=g)
        customer_index = edge_index[0, pos].to(device)
        pos_articles = edge_index[1, pos].to(device)
        neg_articles = torch.randint(0, args.articles, (args.batch,), generator=g).to(device)
        sync(device)
        t0 = time.perf_counter()
        optimizer.zero_grad()
        customer_emb, article_emb = embed()
        loss = model.bce_loss(model.score(customer_emb, article_emb, customer_index, pos_articles),
                              model.score(customer_emb, article_emb, customer_index, neg_articles))
        loss.backward()
        sync(device)
        t1 = time.perf_counter()
        optimizer.step()
        sync(device)
        if step >= args.warmup:
            step_s.append(t1 - t0)
            opt_s.append(time.perf_counter() - t1)
    mean = sum(step_s) / len(step_s)
    gpu = f", peak GPU {torch.cuda.max_memory_allocated() / 2**30:.2f} GiB" if device.type == "cuda" else ""
    print(f"{args.impl:>4}: {mean:.3f} s/step forward+backward (min {min(step_s):.3f}, {len(step_s)} steps), "
          f"Adam step {sum(opt_s) / len(opt_s):.3f} s, setup {build_s:.2f} s ({built}), "
          f"peak RSS {peak_rss_gib():.2f} GiB{gpu}", flush=True)


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--scale", choices=[*SCALES, "custom"], default="seed")
    parser.add_argument("--customers", type=int, help="with --scale custom")
    parser.add_argument("--articles", type=int, help="with --scale custom")
    parser.add_argument("--edges", type=int, help="with --scale custom")
    parser.add_argument("--impl", choices=["csr", "pyg", "both"], default="both",
                        help="csr: HeteroSAGE; pyg: SAGEConv on edge_index (default: both)")
    parser.add_argument("--dim", type=int, default=64)
    parser.add_argument("--layers", type=int, default=2)
    parser.add_argument("--customer-features", type=int, default=4)
    parser.add_argument("--article-features", type=int, default=16)
    parser.add_argument("--batch", type=int, default=65_536, help="positives per step (and as many negatives)")
    parser.add_argument("--steps", type=int, default=3)
    parser.add_argument("--warmup", type=int, default=1)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    args = parser.parse_args()
    if args.scale == "custom":
        if None in (args.customers, args.articles, args.edges):
            parser.error("--scale custom needs --customers, --articles and --edges")
    else:
        args.customers, args.articles, args.edges = SCALES[args.scale]

    if args.impl != "both":
        run_one(args)
        return
    print(f"{args.scale}: {args.customers:,} customers, {args.articles:,} articles, {args.edges:,} purchases; "
          f"{args.layers} layers x {args.dim}, {args.batch:,}+{args.batch:,} pairs/step, "
          f"{args.threads} threads, {args.device}", flush=True)
    for impl in ("csr", "pyg"):  # one process each, so peak RSS is per implementation
        argv = [a for i, a in enumerate(sys.argv[1:]) if not a.startswith("--impl")
                and not (i and sys.argv[i] == "--impl")]
        subprocess.run([sys.executable, __file__, *argv, "--impl", impl], check=True)


if __name__ == "__main__":
    main()

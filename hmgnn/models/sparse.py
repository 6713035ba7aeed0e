"""Mean aggregation for the customer-article graph over sparse CSR adjacencies built once per graph.

Each layer costs two CSR products forward and two backward; backward multiplies by a stored transpose
because transposing a CSR matrix every step costs more than the product itself.
"""

from __future__ import annotations

import warnings

import torch
from torch import Tensor

__all__ = ["Adjacency", "SparseMean", "sparse_mean"]


class SparseMean(torch.autograd.Function):
    """``adj @ x`` with a sparse CSR ``adj`` whose transpose ``adj_t`` is precomputed for the backward pass.

    Only ``x`` receives a gradient: the adjacency is data, not a parameter.
    """

    @staticmethod
    def forward(ctx, adj: Tensor, adj_t: Tensor, x: Tensor) -> Tensor:  # type: ignore[override]
        ctx.adj_t = adj_t  # kept as an attribute: adjacencies are never modified in place
        return torch.sparse.mm(adj, x)

    @staticmethod
    def backward(ctx, grad: Tensor) -> tuple[None, None, Tensor | None]:  # type: ignore[override]
        if not ctx.needs_input_grad[2]:
            return None, None, None
        return None, None, torch.sparse.mm(ctx.adj_t, grad.contiguous())


def sparse_mean(adj: Tensor, adj_t: Tensor, x: Tensor) -> Tensor:
    """Row-weighted mean of ``x`` over each row's neighbours: ``adj @ x``, differentiable in ``x``."""
    return SparseMean.apply(adj, adj_t, x)


def _csr(crow: Tensor, col: Tensor, values: Tensor, shape: tuple[int, int]) -> Tensor:
    with warnings.catch_warnings():  # torch calls the CSR layout "beta"; the products used here are stable
        warnings.filterwarnings("ignore", message="Sparse CSR tensor support is in beta state")
        return torch.sparse_csr_tensor(crow, col, values, shape, check_invariants=False)


class Adjacency:
    r"""Row-normalised adjacencies of the bipartite purchase graph, in both directions, with transposes.

    ``customer_adj`` (customers x articles) averages article states into customers, ``article_adj``
    (articles x customers) the other way; each row sums to 1 (or is empty), so ``customer_adj @ h``
    equals the mean aggregation of PyG's :class:`~torch_geometric.nn.conv.SAGEConv`. Both directions
    share two sets of CSR index tensors; only the four value arrays differ.

    Build it with :meth:`from_edge_index` (purchases) or :meth:`from_counts` (a pair-count matrix); move it with
    :meth:`to`.
    """

    def __init__(
        self,
        num_customers: int,
        num_articles: int,
        customer_crow: Tensor,
        customer_col: Tensor,
        article_crow: Tensor,
        article_col: Tensor,
        customer_values: Tensor,
        customer_values_t: Tensor,
        article_values: Tensor,
        article_values_t: Tensor,
    ) -> None:
        # customer_crow/customer_col: CSR pattern with customers as rows; article_*: the transposed pattern.
        self.num_customers = num_customers
        self.num_articles = num_articles
        self._parts = (customer_crow, customer_col, article_crow, article_col,
                       customer_values, customer_values_t, article_values, article_values_t)
        nc, na = num_customers, num_articles
        self.customer_adj = _csr(customer_crow, customer_col, customer_values, (nc, na))
        self.customer_adj_t = _csr(article_crow, article_col, customer_values_t, (na, nc))
        self.article_adj = _csr(article_crow, article_col, article_values, (na, nc))
        self.article_adj_t = _csr(customer_crow, customer_col, article_values_t, (nc, na))

    @classmethod
    def from_edge_index(cls, edge_index: Tensor, num_customers: int, num_articles: int,
                        dtype: torch.dtype = torch.float32) -> Adjacency:
        r"""Builds both directions from ``('customer', 'buys', 'article')`` edges; a pair bought several times
        weighs by its count (equal to PyG's mean over an edge_index with duplicates).

        Args:
            edge_index (torch.Tensor): ``[2, E]`` customer indices in row 0, article indices in row 1.
            num_customers (int): Number of customer nodes.
            num_articles (int): Number of article nodes.
            dtype (torch.dtype, optional): Value dtype. (default: :obj:`torch.float32`)
        """
        if edge_index.dim() != 2 or edge_index.size(0) != 2:
            raise ValueError(f"edge_index must have shape [2, E], got {list(edge_index.shape)}")
        customer, article = edge_index.long()
        if customer.numel() and (customer.min() < 0 or customer.max() >= num_customers):
            raise ValueError(f"customer index out of range [0, {num_customers}) in edge_index")
        if article.numel() and (article.min() < 0 or article.max() >= num_articles):
            raise ValueError(f"article index out of range [0, {num_articles}) in edge_index")
        # One sorted key per (customer, article) pair gives CSR order and counts repeats in one pass.
        pair, counts = torch.unique(customer * num_articles + article, return_counts=True)
        customer, article = pair // num_articles, pair % num_articles
        return cls._from_pairs(customer, article, counts.to(dtype), num_customers, num_articles)

    @classmethod
    def from_counts(cls, crow: Tensor, col: Tensor, values: Tensor, num_customers: int,
                    num_articles: int) -> Adjacency:
        r"""Builds both directions from a canonical customers x articles CSR matrix of pair weights (sorted
        columns, one entry per pair), e.g. the purchase counts a fit already holds: equal to
        :meth:`from_edge_index` over those purchases, without sorting every purchase.

        Args:
            crow (torch.Tensor): ``[num_customers + 1]`` row pointers.
            col (torch.Tensor): ``[P]`` article of each pair, sorted within each row.
            values (torch.Tensor): ``[P]`` non-negative weight of each pair.
            num_customers (int): Number of customer nodes.
            num_articles (int): Number of article nodes.
        """
        if crow.numel() != num_customers + 1 or col.shape != values.shape:
            raise ValueError(f"a CSR matrix of {num_customers} rows needs {num_customers + 1} row pointers and one "
                             f"value per column index; got {crow.numel()}, {col.numel()} and {values.numel()}")
        customer = torch.repeat_interleave(torch.arange(num_customers), (crow[1:] - crow[:-1]).long())
        return cls._from_pairs(customer, col.long(), values.float(), num_customers, num_articles)

    @classmethod
    def _from_pairs(cls, customer: Tensor, article: Tensor, weight: Tensor, num_customers: int,
                    num_articles: int) -> Adjacency:
        """Both directions from distinct pairs sorted by (customer, article) with their weights."""
        dtype = weight.dtype
        customer_deg = torch.zeros(num_customers, dtype=dtype, device=weight.device).index_add_(0, customer, weight)
        article_deg = torch.zeros(num_articles, dtype=dtype, device=weight.device).index_add_(0, article, weight)
        # Empty rows (no purchases, or all-zero weights) aggregate to 0, as in SAGEConv.
        customer_values = weight / customer_deg.clamp_min(torch.finfo(dtype).tiny)[customer]
        article_values = weight / article_deg.clamp_min(torch.finfo(dtype).tiny)[article]

        # int32 indices halve index memory and are supported by the CPU (MKL) and cuSPARSE kernels.
        index_dtype = torch.int32 if customer.numel() < 2**31 - 1 else torch.int64
        perm = torch.sort(article, stable=True).indices  # already sorted by customer -> transpose order
        customer_crow = _crow(customer, num_customers, index_dtype)
        article_crow = _crow(article, num_articles, index_dtype)
        return cls(
            num_customers, num_articles,
            customer_crow, article.to(index_dtype), article_crow, customer[perm].to(index_dtype),
            customer_values, customer_values[perm], article_values[perm], article_values,
        )

    @property
    def num_edges(self) -> int:
        """Number of distinct stored edges (after merging repeats)."""
        return self._parts[1].numel()

    @property
    def device(self) -> torch.device:
        return self._parts[4].device

    def to(self, device: torch.device | str | None = None, dtype: torch.dtype | None = None) -> Adjacency:
        """A copy on ``device`` with values in ``dtype`` (indices keep their dtype)."""
        idx = [t.to(device) for t in self._parts[:4]]
        val = [t.to(device=device, dtype=dtype) for t in self._parts[4:]]
        return Adjacency(self.num_customers, self.num_articles, *idx, *val)

    def customer_mean(self, article_h: Tensor) -> Tensor:
        """``[num_customers, d]`` mean of the article states each customer bought."""
        return sparse_mean(self.customer_adj, self.customer_adj_t, article_h)

    def article_mean(self, customer_h: Tensor) -> Tensor:
        """``[num_articles, d]`` mean of the states of the customers who bought each article."""
        return sparse_mean(self.article_adj, self.article_adj_t, customer_h)

    def __repr__(self) -> str:
        return (f"{self.__class__.__name__}(customers={self.num_customers}, articles={self.num_articles}, "
                f"edges={self.num_edges}, device={self.device}, dtype={self._parts[4].dtype})")


def _crow(row: Tensor, num_rows: int, index_dtype: torch.dtype) -> Tensor:
    counts = torch.bincount(row, minlength=num_rows)
    crow = torch.zeros(num_rows + 1, dtype=torch.int64, device=row.device)
    torch.cumsum(counts, 0, out=crow[1:])
    return crow.to(index_dtype)

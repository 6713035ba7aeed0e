"""`HeteroSAGE`: the heterogeneous GraphSAGE network (an ``nn.Module``) over the bipartite customer-article purchase
graph, with its decoders and losses. The recommender that serves it is `hmgnn.ranking.recommender`.

Full-batch message passing over the prebuilt CSR adjacencies of :class:`hmgnn.models.sparse.Adjacency`.
"""

from __future__ import annotations

import functools
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor
from torch.nn import Embedding, Linear, ModuleDict, ModuleList

from hmgnn.models.sparse import Adjacency

__all__ = ["HeteroSAGE", "own_edge_basis"]

NODE_TYPES = ("customer", "article")
DECODERS = ("dot", "mlp")
COMBINES = ("last", "mean")
OWN_HALF_LIVES = (7.0, 30.0, 90.0)
"""Half-lives (days) of the recency terms of a pair's own edge (`own_edge_basis`)."""
OWN_BASIS = 2 + len(OWN_HALF_LIVES)


def own_edge_basis(times: Tensor, days: Tensor) -> Tensor:
    """``[P, OWN_BASIS]`` description of pairs the customer bought before: 1, ``log(1 + times bought)`` and
    ``2 ** (-days since the last purchase / h)`` for each half-life h of OWN_HALF_LIVES; the own-edge term of
    :class:`HeteroSAGE` weighs them."""
    times, days = times.float(), days.float()
    columns = [torch.ones_like(times), torch.log1p(times)]
    columns += [torch.exp2(-days / h) for h in OWN_HALF_LIVES]
    return torch.stack(columns, dim=-1)


ONEDNN_MIN_ROWS = 32
"""Customer rows from which `dot_scores` takes oneDNN's product: below, the product streams the article embeddings
for few rows, and the default BLAS does that faster."""


def dot_scores(customer_rows: Tensor, article_rows: Tensor) -> Tensor:
    """``customer_rows @ article_rows.T``. In float32 on the CPU, outside autograd and for ONEDNN_MIN_ROWS rows or
    more, the product goes through oneDNN's linear: the same float32 arithmetic, and for this thin product (the
    embedding width as the inner dimension) faster than the default BLAS on some CPUs (MKL's on AMD's)."""
    if (customer_rows.device.type == "cpu" and customer_rows.dtype == article_rows.dtype == torch.float32
            and len(customer_rows) >= ONEDNN_MIN_ROWS and len(article_rows) and torch.backends.mkldnn.enabled
            and not (torch.is_grad_enabled() and (customer_rows.requires_grad or article_rows.requires_grad))
            and _onednn_linear()):
        return torch.ops.mkldnn._linear_pointwise(customer_rows.contiguous(), article_rows.contiguous(), None,
                                                  "none", [], "")
    return customer_rows @ article_rows.t()


@functools.cache
def _onednn_linear() -> bool:
    """Whether this torch build runs oneDNN's linear (an operator of its CPU compiler) and it agrees with torch.mm on a
    probe; where not, `dot_scores` stays with torch.mm."""
    if not torch.backends.mkldnn.is_available():
        return False
    try:
        generator = torch.Generator().manual_seed(0)
        c, a = torch.randn(8, 16, generator=generator), torch.randn(40, 16, generator=generator)
        got = torch.ops.mkldnn._linear_pointwise(c, a, None, "none", [], "")
    except (AttributeError, RuntimeError):
        return False
    return bool(torch.allclose(got, c @ a.t(), rtol=1e-5, atol=1e-5))


class _SAGE(torch.nn.Module):
    """One destination type of one layer; attribute names match PyG's SAGEConv so weights copy across."""

    def __init__(self, in_channels: int, out_channels: int) -> None:
        super().__init__()
        self.lin_l = Linear(in_channels, out_channels, bias=True)
        self.lin_r = Linear(in_channels, out_channels, bias=False)

    def forward(self, neighbour_mean: Tensor, x: Tensor) -> Tensor:
        return self.lin_l(neighbour_mean) + self.lin_r(x)


class HeteroSAGE(torch.nn.Module):
    r"""GraphSAGE on the customer-article purchase graph, with a dot-product (or small MLP) decoder.

    Each node starts from a projection of its features plus, optionally, a learnable ID embedding, so
    collaborative signal is learned even where features are thin:

    .. math::
        \mathbf{h}^{(0)}_i = \mathbf{W}_{t(i)} \mathbf{x}_i + \mathbf{e}_i .

    Every layer then applies the update of PyG's :class:`~torch_geometric.nn.conv.SAGEConv` (mean aggregation)
    per edge type, as products with the row-normalised CSR adjacencies (same outputs and gradients as
    ``SAGEConv`` on the ``edge_index``, faster), customers reading from the articles they bought and articles
    from their buyers:

    .. math::
        \mathbf{h}^{(l+1)}_i = \mathbf{W}_1 \, \mathrm{mean}_{j \in \mathcal{N}(i)} \mathbf{h}^{(l)}_j
        + \mathbf{W}_2 \mathbf{h}^{(l)}_i ,

    with ReLU and dropout between layers. The score of a pair is the dot product of the final states
    (or an MLP on ``[c, a, c * a]``). Extra dense per-node inputs (e.g. customer recency, article
    popularity trend) are concatenated to the features.

    With ``own_edges``, a pair whose article the customer already bought also scores a learned term of that edge
    (how often, how recently: :func:`own_edge_basis`), as ID-GNN marks the customer's own node so that its
    neighbours are told apart from articles the two embeddings merely place near: the embeddings then learn
    what the customer has not bought yet, and re-buying is learned from the edge itself:

    .. math::
        s(c, a) = \mathbf{z}_c^\top \mathbf{z}_a + [c \to a] \, \mathbf{w}^\top \mathbf{b}(c, a) .

    Args:
        num_customers (int): Number of customer nodes.
        num_articles (int): Number of article nodes.
        customer_channels (int, optional): Width of the customer features ``x``; 0 for none.
            (default: :obj:`0`)
        article_channels (int, optional): Width of the article features ``x``; 0 for none.
            (default: :obj:`0`)
        customer_extra_channels (int, optional): Width of extra customer inputs concatenated to ``x``.
            (default: :obj:`0`)
        article_extra_channels (int, optional): Width of extra article inputs concatenated to ``x``.
            (default: :obj:`0`)
        hidden_channels (int, optional): Width of every layer. (default: :obj:`64`)
        num_layers (int, optional): Number of SAGE layers. (default: :obj:`2`)
        id_embeddings (bool, optional): Learn a per-node ID embedding; off for the feature-only
            ``reference`` recipe. (default: :obj:`True`)
        dropout (float, optional): Dropout between layers. (default: :obj:`0.0`)
        decoder (str, optional): ``"dot"`` or ``"mlp"``. (default: :obj:`"dot"`)
        combine (str, optional): The final embedding: ``"last"`` layer's output, or the ``"mean"`` of the input
            projection and every layer's output (as LightGCN combines its layers), which keeps each node's own
            signal beside its smoothed neighbourhood. (default: :obj:`"last"`)
        own_edges (bool, optional): Add the learned own-edge term to the score of pairs bought before.
            (default: :obj:`False`)
    """

    def __init__(
        self,
        num_customers: int,
        num_articles: int,
        customer_channels: int = 0,
        article_channels: int = 0,
        customer_extra_channels: int = 0,
        article_extra_channels: int = 0,
        hidden_channels: int = 64,
        num_layers: int = 2,
        id_embeddings: bool = True,
        dropout: float = 0.0,
        decoder: str = "dot",
        combine: str = "last",
        own_edges: bool = False,
    ) -> None:
        super().__init__()
        problems = []
        if num_customers < 1 or num_articles < 1:
            problems.append("num_customers and num_articles must be >= 1")
        if min(customer_channels, article_channels, customer_extra_channels, article_extra_channels) < 0:
            problems.append("feature widths must be >= 0")
        if hidden_channels < 1 or num_layers < 1:
            problems.append("hidden_channels and num_layers must be >= 1")
        if not 0.0 <= dropout < 1.0:
            problems.append(f"dropout must be in [0, 1), got {dropout}")
        if decoder not in DECODERS:
            problems.append(f"decoder must be one of {DECODERS}, got {decoder!r}")
        if combine not in COMBINES:
            problems.append(f"combine must be one of {COMBINES}, got {combine!r}")
        if not id_embeddings and (customer_channels + customer_extra_channels == 0
                                  or article_channels + article_extra_channels == 0):
            problems.append("without id_embeddings both node types need input features")
        if problems:
            raise ValueError("HeteroSAGE: " + "; ".join(problems))

        self.num_customers = num_customers
        self.num_articles = num_articles
        self.customer_channels = customer_channels
        self.article_channels = article_channels
        self.customer_extra_channels = customer_extra_channels
        self.article_extra_channels = article_extra_channels
        self.hidden_channels = hidden_channels
        self.num_layers = num_layers
        self.id_embeddings = id_embeddings
        self.dropout = dropout
        self.decoder = decoder
        self.combine = combine
        self.own_edges = own_edges

        in_widths = {"customer": customer_channels + customer_extra_channels,
                     "article": article_channels + article_extra_channels}
        counts = {"customer": num_customers, "article": num_articles}
        self.input_lin = ModuleDict({t: Linear(w, hidden_channels) for t, w in in_widths.items() if w > 0})
        self.embedding = ModuleDict(
            {t: Embedding(n, hidden_channels) for t, n in counts.items()} if id_embeddings else {})
        self.convs = ModuleList(
            ModuleDict({t: _SAGE(hidden_channels, hidden_channels) for t in NODE_TYPES})
            for _ in range(num_layers))
        self.mlp = (torch.nn.Sequential(Linear(3 * hidden_channels, hidden_channels), torch.nn.ReLU(),
                                        Linear(hidden_channels, 1)) if decoder == "mlp" else None)
        self.own = Linear(OWN_BASIS, 1, bias=False) if own_edges else None
        self.reset_parameters()

    @property
    def model_args(self) -> dict[str, Any]:
        """The constructor arguments (plain values): ``HeteroSAGE.from_args(m.model_args)`` rebuilds it."""
        names = ("num_customers", "num_articles", "customer_channels", "article_channels",
                 "customer_extra_channels", "article_extra_channels", "hidden_channels", "num_layers",
                 "id_embeddings", "dropout", "decoder", "combine", "own_edges")
        return {name: getattr(self, name) for name in names}

    @classmethod
    def from_args(cls, args: dict[str, Any]) -> HeteroSAGE:
        """The model a checkpoint's ``model_args`` describe."""
        return cls(**args)

    def reset_parameters(self) -> None:
        r"""Resets all learnable parameters of the module."""
        for lin in self.input_lin.values():
            lin.reset_parameters()
        for emb in self.embedding.values():
            # Small, so ID embeddings start as a perturbation of the feature projection.
            torch.nn.init.normal_(emb.weight, std=0.1)
        for layer in self.convs:
            for conv in layer.values():
                conv.lin_l.reset_parameters()
                conv.lin_r.reset_parameters()
        if self.mlp is not None:
            for module in self.mlp:
                if isinstance(module, Linear):
                    module.reset_parameters()
        if self.own is not None:
            torch.nn.init.zeros_(self.own.weight)  # starts as the model without the term

    def _inputs(self, node_type: str, x: Tensor | None, extra: Tensor | None) -> Tensor:
        parts = [t for t in (x, extra) if t is not None]
        expected = (self.customer_channels + self.customer_extra_channels if node_type == "customer"
                    else self.article_channels + self.article_extra_channels)
        count = self.num_customers if node_type == "customer" else self.num_articles
        width = sum(t.size(-1) for t in parts)
        if width != expected or any(t.shape[0] != count for t in parts):
            got = [list(t.shape) for t in parts]
            raise ValueError(f"{node_type} inputs: expected [{count}, {expected}] in total (x, then extra), got {got}")
        h = None
        if expected > 0:
            h = self.input_lin[node_type](parts[0] if len(parts) == 1 else torch.cat(parts, dim=-1))
        if self.id_embeddings:
            emb = self.embedding[node_type].weight
            h = emb if h is None else h + emb
        return h

    def embeddings(
        self,
        adj: Adjacency,
        customer_x: Tensor | None = None,
        article_x: Tensor | None = None,
        customer_extra: Tensor | None = None,
        article_extra: Tensor | None = None,
    ) -> tuple[Tensor, Tensor]:
        r"""Final states of all nodes: ``(customer_emb [num_customers, hidden], article_emb [num_articles, hidden])``.

        Args:
            adj (Adjacency): The purchase graph both ways; message passing sees only these edges, so
                build it from training-time purchases only.
            customer_x, article_x (torch.Tensor, optional): Node features ``x``.
            customer_extra, article_extra (torch.Tensor, optional): Extra dense inputs, concatenated.
        """
        if (adj.num_customers, adj.num_articles) != (self.num_customers, self.num_articles):
            raise ValueError(f"adjacency is {adj.num_customers} x {adj.num_articles}, "
                             f"model expects {self.num_customers} x {self.num_articles}")
        customer_h = self._inputs("customer", customer_x, customer_extra)
        article_h = self._inputs("article", article_x, article_extra)
        customer_sum, article_sum = customer_h, article_h  # for combine="mean"
        for i, layer in enumerate(self.convs):
            # Both directions read the previous layer's states (as HeteroConv does).
            customer_next = layer["customer"](adj.customer_mean(article_h), customer_h)
            article_next = layer["article"](adj.article_mean(customer_h), article_h)
            if i < self.num_layers - 1:
                customer_next = F.dropout(customer_next.relu(), self.dropout, self.training)
                article_next = F.dropout(article_next.relu(), self.dropout, self.training)
            customer_h, article_h = customer_next, article_next
            if self.combine == "mean":
                customer_sum, article_sum = customer_sum + customer_h, article_sum + article_h
        if self.combine == "mean":
            return customer_sum / (self.num_layers + 1), article_sum / (self.num_layers + 1)
        return customer_h, article_h

    def decode(self, customer_rows: Tensor, article_rows: Tensor) -> Tensor:
        """Scores (logits) of row-aligned (or broadcastable) customer and article states."""
        if self.mlp is None:
            return (customer_rows * article_rows).sum(dim=-1)
        customer_rows, article_rows = torch.broadcast_tensors(customer_rows, article_rows)
        both = torch.cat([customer_rows, article_rows, customer_rows * article_rows], dim=-1)
        return self.mlp(both).squeeze(-1)

    def own_term(self, basis: Tensor) -> Tensor:
        """``[P]`` own-edge terms of pairs bought before, from their :func:`own_edge_basis` rows (zeros without
        ``own_edges``)."""
        if self.own is None:
            return basis.new_zeros(basis.shape[0])
        return self.own(basis).squeeze(-1)

    def score(self, customer_emb: Tensor, article_emb: Tensor, customer_index: Tensor,
              article_index: Tensor) -> Tensor:
        """``[P]`` scores of the pairs ``(customer_index[k], article_index[k])``."""
        return self.decode(customer_emb[customer_index], article_emb[article_index])

    def score_all(self, customer_emb: Tensor, article_emb: Tensor, customer_index: Tensor | None = None,
                  article_index: Tensor | None = None, chunk_size: int = 1 << 22) -> Tensor:
        """``[customers, articles]`` scores of every listed customer against every listed article (all by default).

        ``chunk_size`` bounds the pairs the MLP decoder materialises at once.
        """
        c = customer_emb if customer_index is None else customer_emb[customer_index]
        a = article_emb if article_index is None else article_emb[article_index]
        if self.mlp is None:
            return dot_scores(c, a)
        rows = max(1, chunk_size // max(1, a.size(0)))
        return torch.cat([self.decode(c[s:s + rows, None, :], a[None, :, :])
                          for s in range(0, c.size(0), rows)]) if c.size(0) else c.new_empty(0, a.size(0))

    def forward(self, adj: Adjacency, customer_index: Tensor, article_index: Tensor,
                customer_x: Tensor | None = None, article_x: Tensor | None = None,
                customer_extra: Tensor | None = None, article_extra: Tensor | None = None) -> Tensor:
        """Scores of the given pairs: :meth:`embeddings`, then :meth:`score`."""
        customer_emb, article_emb = self.embeddings(adj, customer_x, article_x, customer_extra, article_extra)
        return self.score(customer_emb, article_emb, customer_index, article_index)

    @staticmethod
    def bce_loss(pos_scores: Tensor, neg_scores: Tensor, pos_weight: Tensor | None = None) -> Tensor:
        """Binary cross-entropy with sampled negatives (the reference objective).

        Positives have label 1, negatives 0; with ``pos_weight`` (``[P]``, e.g. larger for recent
        purchases) the mean is weighted, negatives weighing 1.
        """
        logits = torch.cat([pos_scores.reshape(-1), neg_scores.reshape(-1)])
        labels = torch.cat([torch.ones_like(pos_scores.reshape(-1)), torch.zeros_like(neg_scores.reshape(-1))])
        loss = F.binary_cross_entropy_with_logits(logits, labels, reduction="none")
        if pos_weight is None:
            return loss.mean()
        weight = torch.cat([pos_weight.reshape(-1).to(loss.dtype), torch.ones_like(neg_scores.reshape(-1))])
        return (loss * weight).sum() / weight.sum()

    @staticmethod
    def bpr_loss(pos_scores: Tensor, neg_scores: Tensor, pos_weight: Tensor | None = None) -> Tensor:
        """Bayesian personalised ranking: ``-log sigmoid(pos - neg)``, ``neg_scores`` ``[P]`` or ``[P, K]``."""
        if neg_scores.dim() == pos_scores.dim() + 1:
            pos_scores = pos_scores.unsqueeze(-1)
        loss = -F.logsigmoid(pos_scores - neg_scores)
        loss = loss.reshape(loss.size(0), -1).mean(dim=1)
        return _weighted_mean(loss, pos_weight)

    def sampled_softmax_loss(self, customer_emb: Tensor, article_emb: Tensor, customer_index: Tensor,
                             article_index: Tensor, article_log_popularity: Tensor | None = None,
                             pos_weight: Tensor | None = None, num_negatives: int | None = None,
                             temperature: float = 1.0, negative_index: Tensor | None = None) -> Tensor:
        r"""Softmax over each positive against the other articles of the batch (dot decoder only).

        Args:
            customer_emb, article_emb (torch.Tensor): Output of :meth:`embeddings`.
            customer_index, article_index (torch.Tensor): ``[P]`` positive pairs.
            article_log_popularity (torch.Tensor, optional): ``[num_articles]`` log sampling
                probability; subtracted from the logits (logQ correction) because popular articles
                appear as in-batch negatives more often. (default: :obj:`None`)
            pos_weight (torch.Tensor, optional): ``[P]`` weight per positive. (default: :obj:`None`)
            num_negatives (int, optional): Use this many random batch articles as shared negatives
                instead of all ``P``; the logits take ``P x num_negatives`` memory. (default: :obj:`None`)
            temperature (float, optional): Logits are divided by it. (default: :obj:`1.0`)
            negative_index (torch.Tensor, optional): The articles negatives are drawn from, when
                they are not ``article_index`` itself: a data-parallel rank scoring its shard of a
                batch passes the whole batch's articles, so its negatives are those of the
                single-process step. (default: :obj:`None`, ``article_index``)
        """
        if self.mlp is not None:
            raise ValueError("sampled_softmax_loss needs the dot decoder")
        c, a = customer_emb[customer_index], article_emb[article_index]
        neg_index = article_index if negative_index is None else negative_index
        if num_negatives is not None and num_negatives < neg_index.numel():
            neg_index = neg_index[torch.randperm(neg_index.numel(), device=a.device)[:num_negatives]]
        pos = (c * a).sum(dim=-1, keepdim=True) / temperature
        neg = c @ article_emb[neg_index].t() / temperature
        if article_log_popularity is not None:
            pos = pos - article_log_popularity[article_index].unsqueeze(-1)
            neg = neg - article_log_popularity[neg_index].unsqueeze(0)
        # The positive itself (or another purchase of the same article) is not a negative.
        neg = neg.masked_fill(article_index.unsqueeze(-1) == neg_index.unsqueeze(0), float("-inf"))
        loss = torch.logsumexp(torch.cat([pos, neg], dim=-1), dim=-1) - pos.squeeze(-1)
        return _weighted_mean(loss, pos_weight)

    def __repr__(self) -> str:
        inputs = (f"{self.customer_channels}+{self.customer_extra_channels}",
                  f"{self.article_channels}+{self.article_extra_channels}")
        return (f"{self.__class__.__name__}(customers={self.num_customers}, articles={self.num_articles}, "
                f"inputs=(customer={inputs[0]}, article={inputs[1]}), hidden={self.hidden_channels}, "
                f"layers={self.num_layers}, id_embeddings={self.id_embeddings}, dropout={self.dropout}, "
                f"decoder={self.decoder!r}, combine={self.combine!r}"
                + (", own_edges=True)" if self.own_edges else ")"))


def _weighted_mean(loss: Tensor, weight: Tensor | None) -> Tensor:
    if weight is None:
        return loss.mean()
    weight = weight.reshape(-1).to(loss.dtype)
    return (loss * weight).sum() / weight.sum()

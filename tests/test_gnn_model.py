"""Unit tests of the GNN recommender and its sparse mean aggregation, on small random bipartite graphs."""

from __future__ import annotations

import pytest
import numpy as np
import torch
from torch_geometric.nn import HeteroConv, SAGEConv, to_hetero

from hmgnn.models.gnn import HeteroSAGE
from hmgnn.models.sparse import Adjacency, SparseMean

BUYS = ("customer", "buys", "article")
REV_BUYS = ("article", "rev_buys", "customer")


def random_graph(num_customers=13, num_articles=9, num_edges=50, seed=0):
    """Edges with repeats, and a customer and an article left without any edge."""
    g = torch.Generator().manual_seed(seed)
    customer = torch.randint(0, num_customers - 1, (num_edges,), generator=g)
    article = torch.randint(0, num_articles - 1, (num_edges,), generator=g)
    return torch.stack([customer, article])


def dense_mean(edge_index, num_customers, num_articles):
    """Reference row-normalised dense adjacency (customers x articles, articles x customers); a repeated purchase
    counts again."""
    dense = torch.zeros(num_customers, num_articles, dtype=torch.float64)
    for c, a in edge_index.t().tolist():
        dense[c, a] += 1.0
    norm = lambda m: m / m.sum(1, keepdim=True).clamp_min(1e-300)  # noqa: E731
    return norm(dense), norm(dense.t())


def make_model(**kwargs):
    args = dict(num_customers=13, num_articles=9, customer_channels=5, article_channels=3, hidden_channels=8)
    args.update(kwargs)
    return HeteroSAGE(**args)


def features(model, seed=1):
    g = torch.Generator().manual_seed(seed)
    out = {}
    for name, count, width in (("customer_x", model.num_customers, model.customer_channels),
                               ("article_x", model.num_articles, model.article_channels),
                               ("customer_extra", model.num_customers, model.customer_extra_channels),
                               ("article_extra", model.num_articles, model.article_extra_channels)):
        if width:
            out[name] = torch.randn(count, width, generator=g)
    return out


# ---- Adjacency and the aggregation -------------------------------------------------------------

def test_adjacency_matches_dense_mean():
    edge_index = random_graph()
    adj = Adjacency.from_edge_index(edge_index, 13, 9, dtype=torch.float64)
    customer_dense, article_dense = dense_mean(edge_index, 13, 9)
    torch.testing.assert_close(adj.customer_adj.to_dense(), customer_dense)
    torch.testing.assert_close(adj.article_adj.to_dense(), article_dense)
    torch.testing.assert_close(adj.customer_adj_t.to_dense(), customer_dense.t())
    torch.testing.assert_close(adj.article_adj_t.to_dense(), article_dense.t())
    assert adj.num_edges == torch.unique(edge_index[0] * 9 + edge_index[1]).numel()
    # the nodes without purchases aggregate to zero
    assert adj.customer_adj.to_dense()[12].abs().sum() == 0 and adj.article_adj.to_dense()[8].abs().sum() == 0


def test_adjacency_from_purchase_counts_equals_the_one_from_every_purchase():
    # a fit builds the adjacency from the purchase counts it already holds (no sort of every purchase)
    import scipy.sparse as sp

    edge_index = random_graph()  # repeats included
    counts = sp.csr_matrix((np.ones(edge_index.size(1), np.float32), edge_index.numpy()), shape=(13, 9))
    counts.sum_duplicates()
    built = Adjacency.from_counts(torch.from_numpy(counts.indptr), torch.from_numpy(counts.indices),
                                  torch.from_numpy(counts.data), 13, 9)
    for a, b in zip(built._parts, Adjacency.from_edge_index(edge_index, 13, 9)._parts):
        assert a.dtype == b.dtype and torch.equal(a, b)
    with pytest.raises(ValueError, match="row pointers"):
        Adjacency.from_counts(torch.from_numpy(counts.indptr), torch.from_numpy(counts.indices),
                              torch.from_numpy(counts.data), 12, 9)


def test_adjacency_rejects_bad_input():
    edge_index = random_graph()
    with pytest.raises(ValueError, match="article index out of range"):
        Adjacency.from_edge_index(edge_index, 13, 4)
    with pytest.raises(ValueError, match="customer index out of range"):
        Adjacency.from_edge_index(edge_index, 5, 9)
    with pytest.raises(ValueError, match=r"shape \[2, E\]"):
        Adjacency.from_edge_index(edge_index[0], 13, 9)


def test_sparse_mean_gradcheck():
    adj = Adjacency.from_edge_index(random_graph(6, 5, 15), 6, 5, dtype=torch.float64)
    x = torch.randn(5, 3, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda x: SparseMean.apply(adj.customer_adj, adj.customer_adj_t, x), (x,))
    y = torch.randn(6, 3, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda y: adj.article_mean(y), (y,))


def test_adjacency_to_and_repr():
    adj = Adjacency.from_edge_index(random_graph(), 13, 9)
    moved = adj.to(dtype=torch.float64)
    assert moved.customer_adj.dtype == torch.float64 and moved.num_edges == adj.num_edges
    assert repr(adj).startswith("Adjacency(customers=13, articles=9, edges=")


# ---- Equivalence with PyG ----------------------------------------------------------------------

def _pyg_reference(model: HeteroSAGE) -> HeteroConv | torch.nn.ModuleList:
    """HeteroConv(SAGEConv) layers carrying the model's conv weights."""
    layers = torch.nn.ModuleList()
    for layer in model.convs:
        conv = HeteroConv({BUYS: SAGEConv(model.hidden_channels, model.hidden_channels),
                           REV_BUYS: SAGEConv(model.hidden_channels, model.hidden_channels)}, aggr="sum")
        conv.convs[BUYS].load_state_dict(layer["article"].state_dict())
        conv.convs[REV_BUYS].load_state_dict(layer["customer"].state_dict())
        layers.append(conv)
    return layers


@pytest.mark.parametrize("num_layers", [1, 2, 3])
def test_matches_pyg_heteroconv_outputs_and_gradients(num_layers):
    torch.manual_seed(0)
    edge_index = random_graph()
    model = make_model(num_layers=num_layers)
    feats = features(model)
    adj = Adjacency.from_edge_index(edge_index, 13, 9)  # a repeat counts again == PyG mean over duplicate edges
    reference = _pyg_reference(model)

    customer_emb, article_emb = model.embeddings(adj, **feats)
    (customer_emb.square().sum() + article_emb.sin().sum()).backward()

    # Same input states (shared code path), then PyG's message passing on the raw edge_index.
    x = {"customer": model._inputs("customer", feats["customer_x"], None),
         "article": model._inputs("article", feats["article_x"], None)}
    edges = {BUYS: edge_index, REV_BUYS: edge_index.flip(0)}
    for i, conv in enumerate(reference):
        x = conv(x, edges)
        if i < num_layers - 1:
            x = {k: v.relu() for k, v in x.items()}
    torch.testing.assert_close(customer_emb, x["customer"], atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(article_emb, x["article"], atol=1e-5, rtol=1e-5)

    model_grads = {n: p.grad.clone() for n, p in model.named_parameters()}
    model.zero_grad()
    (x["customer"].square().sum() + x["article"].sin().sum()).backward()
    for name, param in model.named_parameters():  # gradients reaching the inputs and embeddings
        if name.startswith("convs."):
            continue
        torch.testing.assert_close(model_grads[name], param.grad, atol=1e-5, rtol=1e-5, msg=name)
    for i, conv in enumerate(reference):  # gradients of the conv weights
        for edge_type, dst in ((BUYS, "article"), (REV_BUYS, "customer")):
            for pname, p in conv.convs[edge_type].named_parameters():
                torch.testing.assert_close(model_grads[f"convs.{i}.{dst}.{pname}"], p.grad,
                                           atol=1e-5, rtol=1e-5, msg=pname)


def test_matches_pyg_to_hetero():
    torch.manual_seed(0)

    class GraphSAGE(torch.nn.Module):
        def __init__(self, channels: int) -> None:
            super().__init__()
            self.conv1 = SAGEConv(channels, channels)
            self.conv2 = SAGEConv(channels, channels)

        def forward(self, x, edge_index):
            return self.conv2(self.conv1(x, edge_index).relu(), edge_index)

    model = make_model(customer_channels=0, article_channels=0, num_layers=2)
    hetero = to_hetero(GraphSAGE(8), (["customer", "article"], [BUYS, REV_BUYS]), aggr="sum")
    for i, conv in enumerate(("conv1", "conv2")):
        getattr(hetero, conv)["customer__buys__article"].load_state_dict(model.convs[i]["article"].state_dict())
        getattr(hetero, conv)["article__rev_buys__customer"].load_state_dict(model.convs[i]["customer"].state_dict())
    edge_index = random_graph()
    customer_emb, article_emb = model.embeddings(Adjacency.from_edge_index(edge_index, 13, 9))
    x = {"customer": model.embedding["customer"].weight, "article": model.embedding["article"].weight}
    out = hetero(x, {BUYS: edge_index, REV_BUYS: edge_index.flip(0)})
    torch.testing.assert_close(customer_emb, out["customer"], atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(article_emb, out["article"], atol=1e-5, rtol=1e-5)


# ---- The model ---------------------------------------------------------------------------------

MODEL_VARIANTS = [
    dict(),
    dict(decoder="mlp"),
    dict(id_embeddings=False),
    dict(customer_extra_channels=2, article_extra_channels=1, dropout=0.2),
    dict(customer_channels=0, article_channels=0, num_layers=3),
    dict(combine="mean", dropout=0.2),
]


@pytest.mark.parametrize("kwargs", MODEL_VARIANTS)
def test_shapes_and_score_helpers(kwargs):
    torch.manual_seed(0)
    model = make_model(**kwargs).eval()
    adj = Adjacency.from_edge_index(random_graph(), 13, 9)
    customer_emb, article_emb = model.embeddings(adj, **features(model))
    assert customer_emb.shape == (13, 8) and article_emb.shape == (9, 8)
    assert torch.isfinite(customer_emb).all() and torch.isfinite(article_emb).all()

    customer_index, article_index = torch.tensor([0, 3, 12]), torch.tensor([8, 1, 1])
    scores = model.score(customer_emb, article_emb, customer_index, article_index)
    assert scores.shape == (3,)
    full = model.score_all(customer_emb, article_emb)
    assert full.shape == (13, 9)
    torch.testing.assert_close(full[customer_index, article_index], scores)
    subset = model.score_all(customer_emb, article_emb, customer_index, torch.tensor([1, 8]), chunk_size=4)
    torch.testing.assert_close(subset, full[customer_index][:, [1, 8]])
    torch.testing.assert_close(model(adj, customer_index, article_index, **features(model)), scores)


def test_missing_or_wrong_inputs_raise():
    model = make_model(customer_extra_channels=2)
    adj = Adjacency.from_edge_index(random_graph(), 13, 9)
    feats = features(model)
    with pytest.raises(ValueError, match="customer inputs"):
        model.embeddings(adj, feats["customer_x"], feats["article_x"])
    with pytest.raises(ValueError, match="adjacency is"):
        model.embeddings(Adjacency.from_edge_index(random_graph(), 14, 9), **feats)
    with pytest.raises(ValueError, match="decoder must be one of"):
        make_model(decoder="cosine")
    with pytest.raises(ValueError, match="need input features"):
        make_model(id_embeddings=False, customer_channels=0)


@pytest.mark.parametrize("num_layers", [1, 3])
def test_mean_combine_averages_the_input_and_every_layer(num_layers):
    # with every layer's weights at zero each layer outputs 0, so the mean is the input projection / (layers + 1)
    torch.manual_seed(0)
    model = make_model(num_layers=num_layers, combine="mean").eval()
    for layer in model.convs:
        for conv in layer.values():
            for p in conv.parameters():
                torch.nn.init.zeros_(p)
    adj = Adjacency.from_edge_index(random_graph(), 13, 9)
    feats = features(model)
    customer_emb, article_emb = model.embeddings(adj, **feats)
    torch.testing.assert_close(customer_emb, model._inputs("customer", feats.get("customer_x"), None) / (num_layers + 1))
    torch.testing.assert_close(article_emb, model._inputs("article", feats.get("article_x"), None) / (num_layers + 1))
    last = HeteroSAGE(**{**model.model_args, "combine": "last"})
    last.load_state_dict(model.state_dict())
    assert torch.count_nonzero(last.eval().embeddings(adj, **feats)[0]) == 0
    with pytest.raises(ValueError, match="combine must be one of"):
        make_model(combine="sum")


def test_repr_and_model_args_rebuild():
    model = make_model(decoder="mlp", customer_extra_channels=2)
    assert repr(model) == (
        "HeteroSAGE(customers=13, articles=9, inputs=(customer=5+2, article=3+0), hidden=8, "
        "layers=2, id_embeddings=True, dropout=0.0, decoder='mlp', combine='last')")
    args = model.model_args
    assert all(isinstance(v, (int, float, bool, str)) for v in args.values())
    rebuilt = HeteroSAGE.from_args(args)
    rebuilt.load_state_dict(model.state_dict())
    adj = Adjacency.from_edge_index(random_graph(), 13, 9)
    feats = features(model)
    assert torch.equal(rebuilt.eval().score_all(*rebuilt.embeddings(adj, **feats)),
                       model.eval().score_all(*model.embeddings(adj, **feats)))


def test_seed_determinism():
    adj = Adjacency.from_edge_index(random_graph(), 13, 9)
    scores = []
    for _ in range(2):
        torch.manual_seed(123)
        model = make_model()
        scores.append(model.score_all(*model.embeddings(adj, **features(model))))
    assert torch.equal(scores[0], scores[1])
    torch.manual_seed(124)
    model = make_model()
    assert not torch.equal(scores[0], model.score_all(*model.embeddings(adj, **features(model))))


def test_reset_parameters_restores_seeded_init():
    model = make_model(decoder="mlp")
    states = []
    for _ in range(2):
        torch.manual_seed(5)
        model.reset_parameters()
        states.append({k: v.clone() for k, v in model.state_dict().items()})
    torch.manual_seed(6)
    model.reset_parameters()
    assert all(torch.equal(states[0][k], states[1][k]) for k in states[0])
    assert all(not torch.equal(states[0][k], v) for k, v in model.state_dict().items())


# ---- Losses ------------------------------------------------------------------------------------

def test_loss_values():
    pos, neg = torch.tensor([2.0, -1.0]), torch.tensor([0.5, 0.0, 1.0])
    expected = torch.nn.functional.binary_cross_entropy_with_logits(
        torch.cat([pos, neg]), torch.tensor([1.0, 1, 0, 0, 0]))
    torch.testing.assert_close(HeteroSAGE.bce_loss(pos, neg), expected)
    torch.testing.assert_close(HeteroSAGE.bce_loss(pos, neg, torch.ones(2)), expected)
    weighted = HeteroSAGE.bce_loss(pos, neg, torch.tensor([0.0, 1.0]))
    terms = torch.nn.functional.binary_cross_entropy_with_logits(
        torch.tensor([-1.0, 0.5, 0.0, 1.0]), torch.tensor([1.0, 0, 0, 0]), reduction="sum") / 4
    torch.testing.assert_close(weighted, terms)

    bpr = HeteroSAGE.bpr_loss(pos, neg[:2])
    torch.testing.assert_close(bpr, -torch.nn.functional.logsigmoid(pos - neg[:2]).mean())
    many = HeteroSAGE.bpr_loss(pos, torch.stack([neg[:2], neg[1:]], dim=1))
    assert many.shape == () and many > 0


def test_sampled_softmax_matches_cross_entropy_and_masks_repeats():
    model = make_model()
    customer_emb, article_emb = torch.randn(13, 8), torch.randn(9, 8)
    customer_index, article_index = torch.tensor([0, 1, 2]), torch.tensor([4, 5, 6])
    logits = customer_emb[customer_index] @ article_emb[article_index].t()
    expected = torch.nn.functional.cross_entropy(logits, torch.arange(3))
    got = model.sampled_softmax_loss(customer_emb, article_emb, customer_index, article_index)
    torch.testing.assert_close(got, expected)
    # log-popularity correction subtracts log q of each column
    log_pop = torch.randn(9)
    expected = torch.nn.functional.cross_entropy(logits - log_pop[article_index], torch.arange(3))
    got = model.sampled_softmax_loss(customer_emb, article_emb, customer_index, article_index, log_pop)
    torch.testing.assert_close(got, expected)
    # a repeated article is not its own negative: two identical pairs give log(1) = 0 each
    loss = model.sampled_softmax_loss(customer_emb, article_emb, torch.tensor([0, 0]), torch.tensor([3, 3]))
    torch.testing.assert_close(loss, torch.tensor(0.0))
    with pytest.raises(ValueError, match="dot decoder"):
        make_model(decoder="mlp").sampled_softmax_loss(customer_emb, article_emb, customer_index, article_index)


@pytest.mark.parametrize("loss_name,kwargs", [("bce", {}), ("bce", dict(decoder="mlp")), ("bpr", {}),
                                              ("softmax", {}), ("bce", dict(id_embeddings=False))])
def test_losses_decrease_on_toy_problem(loss_name, kwargs):
    """Each customer buys the articles of its own block; a few Adam steps must lower the loss."""
    torch.manual_seed(0)
    customers = torch.arange(40)
    edge_index = torch.stack([customers.repeat_interleave(3), (customers.repeat_interleave(3) % 4) * 3
                              + torch.arange(3).repeat(40)])
    model = make_model(num_customers=40, num_articles=12, **kwargs)
    adj = Adjacency.from_edge_index(edge_index, 40, 12)
    feats = features(model)
    optimizer = torch.optim.Adam(model.parameters(), lr=0.02)
    neg_articles = (edge_index[1] + 6) % 12  # always another block
    weight = torch.linspace(0.5, 1.5, edge_index.size(1))
    losses = []
    for _ in range(30):
        optimizer.zero_grad()
        customer_emb, article_emb = model.embeddings(adj, **feats)
        if loss_name == "softmax":
            batch = torch.arange(0, edge_index.size(1), 3)  # one positive per customer block article
            loss = model.sampled_softmax_loss(customer_emb, article_emb, edge_index[0, batch], edge_index[1, batch])
        else:
            pos = model.score(customer_emb, article_emb, edge_index[0], edge_index[1])
            neg = model.score(customer_emb, article_emb, edge_index[0], neg_articles)
            loss = getattr(model, f"{loss_name}_loss")(pos, neg, weight)
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    assert losses[-1] < 0.7 * losses[0]


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_matches_cpu():
    torch.manual_seed(0)
    model = make_model()
    feats = features(model)
    adj = Adjacency.from_edge_index(random_graph(), 13, 9)
    customer_emb, article_emb = model.embeddings(adj, **feats)
    (customer_emb.sum() + article_emb.square().sum()).backward()
    cpu_grads = [p.grad.clone() for p in model.parameters()]
    model.zero_grad()
    model = model.cuda()
    cuda_emb = model.embeddings(adj.to("cuda"), **{k: v.cuda() for k, v in feats.items()})
    (cuda_emb[0].sum() + cuda_emb[1].square().sum()).backward()
    torch.testing.assert_close(cuda_emb[0].cpu(), customer_emb, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(cuda_emb[1].cpu(), article_emb, atol=1e-5, rtol=1e-5)
    for cpu_grad, p in zip(cpu_grads, model.parameters()):
        torch.testing.assert_close(p.grad.cpu(), cpu_grad, atol=1e-5, rtol=1e-5)

"""One test suite for every recommender (shapes, filtering, candidates, conflicts, ties, determinism, cold start),
plus hand-made data sets whose right answer is known for each baseline."""

import datetime as dt

import numpy as np
import pytest
import scipy.sparse as sp
import torch

from hmgnn.errors import ConfigError
from hmgnn.interactions import Interactions
from hmgnn.models import MODELS, Recommender
from hmgnn.registry import LAZY_MODELS, create_model, model_names
from hmgnn.models.base import AGE_BANDS
from hmgnn.models.itemgraph import EASE, EASERecommender, RP3Beta


class DotProduct(Recommender):
    """A dense toy model (seeded random embeddings, dot product): runs the base's dense path, like the GNN."""

    score_kind = "logit"

    def __init__(self, dim: int = 4, seed: int = 0, cold_start: bool = True, batch_size: int = 1024) -> None:
        super().__init__(cold_start=cold_start, batch_size=batch_size)
        self.dim, self.seed = dim, seed

    def _fit(self, interactions, as_of):
        g = torch.Generator().manual_seed(self.seed)
        self.customer = torch.randn(interactions.n_customers, self.dim, generator=g)
        self.article = torch.randn(interactions.n_articles, self.dim, generator=g)

    def score_all(self, customer_indices):
        return self.customer[torch.as_tensor(customer_indices)] @ self.article.T


# Every recommender that the shared suite runs: one factory per model (the trained GNN from a small checkpoint).
def untrained_gnn(ranker: bool = True, decoder: str = "dot"):
    """The GNN recommender over a freshly initialised model and a ranker fit on random rows: the interface, not
    the quality, is under test."""
    from hmgnn.models.gnn import HeteroSAGE
    from hmgnn.ranking.checkpoint import Checkpoint
    from hmgnn.ranking.recommender import GNNRecommender
    from hmgnn.ranking.features import ArticleMeta

    torch.manual_seed(0)
    model = HeteroSAGE(N_CUSTOMERS, N_ARTICLES, customer_channels=2, article_channels=3,
                       customer_extra_channels=4, article_extra_channels=5, hidden_channels=8,
                       decoder=decoder)
    meta = ArticleMeta(np.arange(N_ARTICLES, dtype=np.int32) // 2, {"product_type_no": np.arange(N_ARTICLES) % 3})
    sizes = {"gnn": 6, "bought": 5, "variant": 3, "popular": 4, "trending": 4, "walk": 5}
    checkpoint = Checkpoint(
        recipe="gnn", model_args=model.model_args, state_dict=model.state_dict(),
        train_config={"loss": "bpr", "edge_half_life": 0.0}, config={}, seed=0,
        feature_names={"customer": [], "article": []}, time_features=True, graph_fingerprint="",
        ranker=_random_ranker(meta).to_dict() if ranker else None,
        ranker_only=None, auto="gnn", candidate_sizes=sizes, gnn_recent_days=0, retrieval_drops_bought=False,
        retrieval_head=None, rest_mix=0.5, article_meta=meta.to_dict(), best_epoch=0, validation_map=0.0, refit=None,
        files={}, updates=[])
    g = torch.Generator().manual_seed(1)
    return GNNRecommender(checkpoint, torch.randn(N_CUSTOMERS, 2, generator=g), torch.randn(N_ARTICLES, 3, generator=g))


def _random_ranker(meta):
    from hmgnn.ranking.features import Snapshot
    from hmgnn.ranking.pairs import feature_names
    from hmgnn.ranking.ranker import Ranker

    names = feature_names(Snapshot(random_interactions(), AS_OF, meta))
    rng = np.random.default_rng(0)
    x = rng.normal(size=(400, len(names))).astype(np.float32)
    labels = (x[:, len(names) - 3] + rng.normal(size=400) > 1).astype(np.float32)
    return Ranker.fit(x, labels, np.full(40, 10), names, trees=5, leaves=4)


def als():
    pytest.importorskip("implicit")
    return create_model("als")


FACTORIES = {name: (lambda name=name: create_model(name)) for name in sorted(MODELS) if name not in LAZY_MODELS}
FACTORIES["dense-toy"] = DotProduct
FACTORIES["gnn"] = untrained_gnn
FACTORIES["gnn-retrieval"] = lambda: untrained_gnn(ranker=False)
FACTORIES["gnn-mlp"] = lambda: untrained_gnn(decoder="mlp")
FACTORIES["als"] = als
FACTORIES["rp3beta"] = lambda: create_model("rp3beta")
FACTORIES["ease"] = lambda: create_model("ease")
FACTORIES["ease-cut"] = lambda: EASERecommender(max_articles=7)  # most articles outside its matrix
ALL = pytest.mark.parametrize("make", FACTORIES.values(), ids=FACTORIES.keys())

N_CUSTOMERS, N_ARTICLES, N_COLD = 40, 30, 5
AS_OF = dt.date(2020, 9, 22)


def random_interactions(seed: int = 0) -> Interactions:
    """40 customers (the last 5 never buy), 30 articles, 400 purchases over 60 days, with ages."""
    rng = np.random.default_rng(seed)
    n = 400
    customers = rng.integers(0, N_CUSTOMERS - N_COLD, n)
    articles = np.minimum(rng.geometric(0.12, n) - 1, N_ARTICLES - 1)  # skewed popularity
    days = np.datetime64(AS_OF, "D") - rng.integers(0, 60, n)
    ages = rng.choice([-1, 19, 28, 40, 50, 70], N_CUSTOMERS)
    return Interactions(customers, articles, days, N_CUSTOMERS, N_ARTICLES, ages)


@pytest.fixture(scope="module")
def interactions():
    return random_interactions()


@pytest.fixture
def fitted(request, interactions):
    return request.param().fit(interactions, AS_OF)


FITTED = pytest.mark.parametrize("fitted", FACTORIES.values(), ids=FACTORIES.keys(), indirect=True)
WARM = np.arange(N_CUSTOMERS - N_COLD)


def test_registry_names_every_baseline():
    assert {"popular", "popular-new", "repurchase", "trending", "gnn", "rp3beta", "ease"} <= set(model_names())
    with pytest.raises(ConfigError, match="popular"):
        create_model("popularr")


@FITTED
def test_shapes_one_customer_and_many(fitted):
    ids, scores = fitted.recommend(3, k=12)
    assert ids.shape == scores.shape == (12,)
    assert ids.dtype == np.int64 and scores.dtype == np.float32
    ids2, scores2 = fitted.recommend(np.array([3, 4, 5]), k=12)
    assert ids2.shape == scores2.shape == (3, 12)
    assert np.array_equal(ids2[0], ids)
    ids3, _ = fitted.recommend(torch.tensor([3, 4, 5]), k=12)
    assert np.array_equal(ids3, ids2)
    assert fitted.recommend(3, k=100)[0].shape == (N_ARTICLES,)  # k is clipped to the catalogue


@FITTED
def test_rankings_are_valid_sorted_and_unique(fitted):
    ids, scores = fitted.recommend(np.arange(N_CUSTOMERS), k=20)
    assert (ids < N_ARTICLES).all()
    assert np.array_equal(ids == -1, np.isneginf(scores))  # an empty slot (popular-new) is -1 with -inf
    assert (np.diff((ids == -1).astype(int), axis=1) >= 0).all()  # ... and only at the end
    assert np.all(np.diff(np.nan_to_num(scores, neginf=-1e30), axis=1) <= 0)
    assert all(len(set(row) - {-1}) == (row >= 0).sum() for row in ids)


@FITTED
def test_ties_go_to_the_smaller_article_index(fitted):
    ids, scores = fitted.recommend(np.arange(N_CUSTOMERS), k=N_ARTICLES)
    for row_ids, row_scores in zip(ids, scores):
        for a, b, sa, sb in zip(row_ids, row_ids[1:], row_scores, row_scores[1:]):
            assert sa > sb or a < b or b == -1


@ALL
def test_nothing_seen_means_all_ties_and_index_order(make):
    empty = Interactions(np.zeros(0, np.int32), np.zeros(0, np.int32), np.zeros(0, "datetime64[D]"), 4, 10)
    model = make()
    if getattr(model, "fixed_catalogue", False):
        pytest.skip("a trained model is bound to the customers and articles of its graph")
    ids, _ = model.fit(empty, AS_OF).recommend(np.arange(4), k=5)
    assert ids.tolist() == [[0, 1, 2, 3, 4]] * 4


@ALL
def test_deterministic(make, interactions):
    a = make().fit(interactions, AS_OF).recommend(np.arange(N_CUSTOMERS), k=12)
    b = make().fit(interactions, AS_OF).recommend(np.arange(N_CUSTOMERS), k=12)
    assert np.array_equal(a[0], b[0]) and np.array_equal(a[1], b[1])


@FITTED
def test_batches_do_not_change_the_answer(fitted):
    a = fitted.recommend(np.arange(N_CUSTOMERS), k=12, batch_size=7)
    b = fitted.recommend(np.arange(N_CUSTOMERS), k=12, batch_size=1000)
    # same articles; scores equal up to float rounding (a matrix product may block differently per batch size)
    assert np.array_equal(a[0], b[0]) and np.allclose(a[1], b[1], rtol=1e-5, atol=1e-6)


@FITTED
def test_batches_side_by_side_give_the_serial_answer(fitted, monkeypatch):
    import hmgnn.models.base as base

    threads = torch.get_num_threads()
    parallel = fitted.recommend(np.arange(N_CUSTOMERS), k=12, batch_size=5)  # several batches: in threads
    assert torch.get_num_threads() == threads  # the threads' share of the cores is given back
    monkeypatch.setattr(base, "PARALLEL_BATCHES", 1)
    serial = fitted.recommend(np.arange(N_CUSTOMERS), k=12, batch_size=5)
    assert np.array_equal(parallel[0], serial[0]) and np.allclose(parallel[1], serial[1], rtol=1e-5, atol=1e-6)


def test_in_parallel_keeps_the_order_and_passes_errors_on():
    from hmgnn.models.base import in_parallel

    assert in_parallel(lambda x: x * x, list(range(20))) == [x * x for x in range(20)]
    assert in_parallel(lambda x: x, []) == []
    threads = torch.get_num_threads()
    with pytest.raises(ZeroDivisionError):
        in_parallel(lambda x: 1 // x, [3, 2, 1, 0])
    assert torch.get_num_threads() == threads


@FITTED
def test_filter_already_bought(fitted, interactions):
    ids, _ = fitted.recommend(WARM, k=N_ARTICLES, filter_already_bought=True)
    bought = fitted.user_items.toarray() > 0
    ranked = np.ones((N_CUSTOMERS, N_ARTICLES), bool)
    for c, row in zip(WARM, ids):
        real = row[row >= 0]
        assert not bought[c, real].any()
        # every ranked article not bought is still there, and the empty slots are marked -1
        assert len(real) == (ranked[c] & ~bought[c]).sum() and (row[len(real):] == -1).all()


@FITTED
def test_candidates_restrict_the_ranking(fitted):
    cand = np.array([29, 3, 17, 8, 11])
    ids, scores = fitted.recommend(np.arange(N_CUSTOMERS), k=12, candidates=cand)
    assert ids.shape == (N_CUSTOMERS, 5)  # k clipped to the candidate count
    for customer, row in enumerate(ids.tolist()):
        assert set(row) - {-1} <= set(cand)
        missing = set(cand.tolist()) - set(row)
        # only a model that drops bought articles leaves some out
        assert not missing or fitted.filters_bought
        assert missing <= set(fitted.user_items[customer].indices.tolist())
    full = fitted.score(np.repeat(np.arange(N_CUSTOMERS), 5), np.tile(cand, N_CUSTOMERS)).reshape(-1, 5)
    assert np.allclose(np.sort(full, axis=1)[:, ::-1], scores)


@FITTED
def test_candidates_with_filter(fitted):
    cand = np.arange(10)
    ids, _ = fitted.recommend(WARM, k=10, candidates=cand, filter_already_bought=True)
    bought = fitted.user_items.toarray() > 0
    for c, row in zip(WARM, ids):
        assert set(row[row >= 0]) == set(np.flatnonzero(~bought[c, :10]))


@FITTED
def test_filter_items(fitted):
    ids, _ = fitted.recommend(np.arange(N_CUSTOMERS), k=N_ARTICLES, filter_items=[0, 1, 2])
    assert ids.shape == (N_CUSTOMERS, N_ARTICLES - 3) and not np.isin(ids, [0, 1, 2]).any()


@FITTED
def test_conflicting_or_bad_options_raise(fitted):
    bought = np.flatnonzero(fitted.user_items[0].toarray()[0])
    with pytest.raises(ValueError, match="already bought every candidate"):
        fitted.recommend(0, candidates=bought, filter_already_bought=True)
    with pytest.raises(ValueError, match="not both"):
        fitted.recommend(0, candidates=[1, 2], filter_items=[3])
    with pytest.raises(ValueError, match="empty"):
        fitted.recommend(0, candidates=[])
    with pytest.raises(ValueError, match="every article"):
        fitted.recommend(0, filter_items=np.arange(N_ARTICLES))
    with pytest.raises(ValueError, match="k must be"):
        fitted.recommend(0, k=0)
    with pytest.raises(ValueError, match="customer indices"):
        fitted.recommend(N_CUSTOMERS)
    with pytest.raises(ValueError, match="1-D"):
        fitted.recommend(np.zeros((2, 2), int))
    with pytest.raises(ValueError, match="article indices"):
        fitted.recommend(0, candidates=[N_ARTICLES])
    with pytest.raises(ValueError, match="same length"):
        fitted.score([0, 1], [0])


@FITTED
def test_score_agrees_with_recommend(fitted):
    customers = np.arange(N_CUSTOMERS)
    ids, scores = fitted.recommend(customers, k=8)
    paired = fitted.score(np.repeat(customers, 8), ids.ravel()).reshape(ids.shape)
    assert np.allclose(paired, scores)


@FITTED
def test_sparse_fast_path_equals_dense_path(fitted, monkeypatch):
    args = [(dict(k=12), None), (dict(k=12, filter_already_bought=True), None),
            (dict(k=4, candidates=[1, 5, 7, 9, 20, 25], filter_already_bought=True), None)]
    fast = [fitted.recommend(np.arange(N_CUSTOMERS), **kw) for kw, _ in args]
    monkeypatch.setattr(fitted, "shared_scores", lambda: None)
    dense = [fitted.recommend(np.arange(N_CUSTOMERS), **kw) for kw, _ in args]
    for (fi, fs), (di, ds) in zip(fast, dense):
        assert np.array_equal(fi, di)
        assert np.allclose(fs, ds)


@FITTED
def test_cold_customers_get_their_age_band_bestsellers(fitted, interactions):
    cold = np.arange(N_CUSTOMERS - N_COLD, N_CUSTOMERS)
    assert fitted.is_cold(cold).all() and not fitted.is_cold(WARM).any()
    for c in cold:
        age = int(interactions.customer_age[c])
        ids, scores = fitted.recommend(int(c), k=6)
        expected = fitted.recommend_unknown(k=6, age=age)
        assert np.array_equal(ids, expected[0]) and np.allclose(scores, expected[1])
        reason = fitted.fallback_reason(int(c))
        if age < 0:
            assert "global bestsellers" in reason
        else:
            assert next(label for low, high, label in AGE_BANDS if low <= age < high) in reason
    assert fitted.fallback_reason(0) is None


@ALL
def test_unfitted_model_says_so(make):
    with pytest.raises(RuntimeError, match="fit"):
        make().recommend(0)


def test_fit_never_sees_after_as_of():
    inter = hand_made()
    late = Interactions(np.array([0]), np.array([9]), np.array(["2020-09-30"], "datetime64[D]"), 6, 10)
    both = Interactions(np.concatenate([inter.customer_index, late.customer_index]),
                        np.concatenate([inter.article_index, late.article_index]),
                        np.concatenate([inter.t_dat, late.t_dat]), 6, 10)
    a = create_model("trending").fit(inter, AS_OF).recommend(np.arange(6), k=10)
    b = create_model("trending").fit(both, AS_OF).recommend(np.arange(6), k=10)
    assert np.array_equal(a[0], b[0])


# ---- known answers ----------------------------------------------------------------------------------------
def hand_made() -> Interactions:
    """6 customers, 10 articles. In the last 7 days article a is bought 6 - a times (a = 0..5); articles 6 and
    7 once each, 20 days earlier; 8 and 9 never. Customer 5 bought 1..5 on five consecutive days, 5 last;
    customer 0 bought article 0 twice and article 6 earlier."""
    rows = [  # (customer, article, days before AS_OF)
        (0, 0, 6), (0, 0, 0), (1, 0, 5), (2, 0, 6), (3, 0, 6), (4, 0, 6),
        (1, 1, 4), (2, 1, 5), (3, 1, 5), (4, 1, 5), (5, 1, 4),
        (2, 2, 4), (3, 2, 4), (4, 2, 4), (5, 2, 3),
        (3, 3, 3), (4, 3, 3), (5, 3, 2),
        (4, 4, 2), (5, 4, 1),
        (5, 5, 0),
        (0, 6, 20), (1, 7, 20),
    ]
    c, a, d = (np.array(x) for x in zip(*rows))
    return Interactions(c, a, np.datetime64(AS_OF, "D") - d, 6, 10)


def test_popular_known_answer():
    model = create_model("popular").fit(hand_made(), AS_OF)
    ids, scores = model.recommend(np.arange(6), k=10)
    assert (ids == np.arange(10)).all()  # window counts, then all-time (6 before 7), then index (8, 9)
    assert scores[0, :6].astype(int).tolist() == [6, 5, 4, 3, 2, 1]


def test_popular_new_known_answer():
    model = create_model("popular-new").fit(hand_made(), AS_OF)
    ids, _ = model.recommend(np.array([0, 5]), k=10)
    assert ids[0].tolist() == [1, 2, 3, 4, 5, 7, 8, 9, -1, -1]
    assert ids[1].tolist() == [0, 6, 7, 8, 9, -1, -1, -1, -1, -1]
    assert np.isneginf(model.score([5], [3])[0])


def test_repurchase_known_answer():
    model = create_model("repurchase").fit(hand_made(), AS_OF)
    ids, _ = model.recommend(np.array([0, 1, 5]), k=10)
    assert ids[0].tolist() == [0, 6, 1, 2, 3, 4, 5, 7, 8, 9]  # own purchases most recent first, then popular
    assert ids[1].tolist() == [1, 0, 7, 2, 3, 4, 5, 6, 8, 9]
    assert ids[2].tolist() == [5, 4, 3, 2, 1, 0, 6, 7, 8, 9]


def test_repurchase_breaks_recency_ties_by_count():
    # both bought on the same day; article 3 twice: it comes first although article 1 is more popular
    c, a, d = np.array([0, 0, 0, 1, 2]), np.array([1, 3, 3, 1, 1]), np.array([2, 2, 2, 0, 0])
    model = create_model("repurchase").fit(Interactions(c, a, np.datetime64(AS_OF, "D") - d, 3, 5), AS_OF)
    assert model.recommend(0, k=3)[0].tolist() == [3, 1, 0]


def test_trending_known_answer():
    # article 2: bought 3 times 27 days ago and once today -> 3/28 + 1 = 31/28, the top trend (scaled to 1);
    # article 4: once today -> 1 / (31/28) = 28/31
    c, a, d = np.array([1, 2, 3, 1, 0]), np.array([2, 2, 2, 4, 2]), np.array([27, 27, 27, 0, 0])
    model = create_model("trending").fit(Interactions(c, a, np.datetime64(AS_OF, "D") - d, 4, 6), AS_OF)
    ids, scores = model.recommend(np.array([0, 1, 3]), k=3)
    old = 0.5 ** (27 / 30)  # weight of an own purchase 27 days ago (half-life 30)
    assert ids[0].tolist() == [2, 4, 0] and scores[0, :2] == pytest.approx([1 + 1, 28 / 31], rel=1e-6)
    # customer 1 bought 2 long ago and 4 today: the recent own purchase wins
    assert ids[1].tolist() == [4, 2, 0] and scores[1, :2] == pytest.approx([28 / 31 + 1, 1 + old], rel=1e-6)
    assert ids[2].tolist() == [2, 4, 0] and scores[2, :2] == pytest.approx([1 + old, 28 / 31], rel=1e-6)
    assert model.recommend(3, k=3)[1][2] == pytest.approx(0, abs=1e-8)  # never bought lately: ~0


def test_checkerboard_popular_new():
    # a checkerboard: customer c bought every article of its parity; popular-new must return the other parity
    n = 8
    c, a = np.nonzero((np.arange(n)[:, None] + np.arange(n)[None, :]) % 2 == 0)
    model = create_model("popular-new").fit(Interactions(c, a, np.full(len(c), np.datetime64(AS_OF, "D")), n, n))
    ids, _ = model.recommend(np.arange(n), k=4)
    assert all(set(row) == set(range((c0 + 1) % 2, n, 2)) for c0, row in enumerate(ids.tolist()))


def _rp3(bought: np.ndarray, beta: float) -> np.ndarray:
    """RP3beta by hand on a dense 0/1 purchase matrix: customer -> article -> buyer -> article, over degree^beta."""
    c_deg, a_deg = bought.sum(1, keepdims=True), bought.sum(0)
    step_ca = bought / np.maximum(c_deg, 1)
    step_ac = bought.T / np.maximum(a_deg, 1)[:, None]
    return step_ca @ step_ac @ step_ca / np.maximum(a_deg, 1) ** beta


def on_one_day(pairs: list[tuple[int, int]], n_customers: int, n_articles: int) -> Interactions:
    """(customer, article) purchases, all on AS_OF: the held-out week holds every purchase, so no setting can be
    chosen and a model keeps its defaults."""
    c, a = (np.array(x) for x in zip(*pairs))
    return Interactions(c, a, np.full(len(c), np.datetime64(AS_OF, "D")), n_customers, n_articles)


def test_rp3beta_ranks_the_article_most_walks_reach_first():
    # customer 0 bought article 0; its buyers 1-3 also bought 1, buyer 4 also bought 2: from 0, walks reach 0 most
    # (0.6), then 1 (0.3), then 2 (0.1); 3 is out of reach; customer 5 (articles 3, 4) never meets them
    pairs = [(0, 0), (1, 0), (1, 1), (2, 0), (2, 1), (3, 0), (3, 1), (4, 0), (4, 2), (5, 3), (5, 4)]
    model = create_model("rp3beta").fit(on_one_day(pairs, 6, 6), AS_OF)
    assert (model.choice.value, model.choice.drop_bought, model.choice.window) == (0.5, False, None)
    assert "defaults" in repr(model)
    assert model.recommend(0, k=6)[0].tolist() == [0, 1, 2, 3, 4, 5]
    assert model.recommend(0, k=3, filter_already_bought=True)[0].tolist() == [1, 2, 3]
    dense = np.zeros((6, 6))
    for c, a in pairs:
        dense[c, a] = 1
    for beta in (0.0, 0.5, 1.0):
        want = _rp3(dense, beta)
        got = RP3Beta(sp.csr_matrix(dense), beta).dense(np.arange(6)).numpy()
        assert np.allclose(got, want / (want.std(1, keepdims=True) + 1e-12), atol=1e-5)


def test_random_walk_is_rp3beta_bit_for_bit():
    # the ranker's walk feature as it was written before RP3Beta took its math: it must not move by one bit
    from hmgnn.ranking.candidates import RandomWalk
    from hmgnn.ranking.features import ArticleMeta, Snapshot

    def walk_as_before(times_bought: sp.csr_matrix, beta: float, customers: np.ndarray):
        bought = times_bought.astype(np.float32)
        bought.data[:] = 1.0
        c_deg = np.asarray(bought.sum(1)).ravel()
        a_deg = np.asarray(bought.sum(0)).ravel()
        customer_step = (sp.diags(1 / np.maximum(c_deg, 1)).astype(np.float32) @ bought).tocsr()
        article_step = (sp.diags(1 / np.maximum(a_deg, 1)).astype(np.float32) @ bought.T).tocsr()
        last_step = (customer_step @ sp.diags((1 / np.maximum(a_deg, 1) ** beta).astype(np.float32))).tocsr()
        buyers = customer_step[customers] @ article_step
        scores = torch.from_numpy((buyers @ last_step).toarray())
        return scores / (scores.std(1, correction=0, keepdim=True) + 1e-12)

    for seed in range(3):
        inter = random_interactions(seed)
        snapshot = Snapshot(inter, AS_OF, ArticleMeta(np.arange(N_ARTICLES, dtype=np.int32), {}))
        customers = np.random.default_rng(seed).permutation(N_CUSTOMERS)[:17]
        for beta in (0.0, 0.5, 0.77):
            want = walk_as_before(snapshot.times_bought, beta, customers)
            got = (RandomWalk(snapshot, beta) if beta != 0.5 else RandomWalk(snapshot)).dense(customers)
            assert got.dtype == want.dtype and torch.equal(got, want)


def test_ease_ranks_the_articles_co_bought_with_the_customers_purchases_first():
    # a checkerboard: customers 0-7 bought every article of their parity; customer 8 bought article 0 only: EASE
    # gives it the other even articles (co-bought with 0), then article 0 itself and the odd ones (score 0)
    n = 8
    c, a = np.nonzero((np.arange(n)[:, None] + np.arange(n)[None, :]) % 2 == 0)
    model = create_model("ease").fit(on_one_day([*zip(c, a), (8, 0)], n + 1, n), AS_OF)
    assert (model.choice.value, model.choice.drop_bought) == (200.0, False)
    ids, scores = model.recommend(8, k=n)
    assert ids.tolist() == [2, 4, 6, 0, 1, 3, 5, 7] and (scores[:3] > 0).all() and (scores[3:] == 0).all()


@pytest.mark.parametrize("buyers", [N_CUSTOMERS, 6], ids=["through-articles", "through-customers"])
def test_ease_weights_are_the_closed_form(buyers):
    # with 6 buyers and 30 articles the inverse goes through the 6 x 6 matrix (Woodbury); the answer is the same
    inter = random_interactions()
    inter = inter.subset(inter.customer_index < buyers)
    bought = inter.user_items()
    x = (bought.toarray() > 0).astype(np.float64)
    p = np.linalg.inv(x.T @ x + 50 * np.eye(N_ARTICLES))
    b = -p / np.diag(p)[None, :]
    np.fill_diagonal(b, 0)
    ease = EASE(bought, 50.0, N_ARTICLES)
    assert (2 * buyers < len(ease.kept)) == (buyers == 6)  # the path the test names
    x, b = x[:, ease.kept], b[np.ix_(ease.kept, ease.kept)]  # (an article nobody bought is outside B)
    assert np.allclose(ease.weights.numpy(), b, atol=1e-6)
    assert np.allclose(ease.dense(np.arange(N_CUSTOMERS)).numpy()[:, ease.kept], x @ b, atol=1e-5)


def test_ease_ranks_the_articles_outside_its_matrix_last_by_sales():
    inter = random_interactions()
    model = EASERecommender(max_articles=5).fit(inter, AS_OF)
    sales = np.bincount(inter.article_index, minlength=N_ARTICLES)
    kept = model.scorer.kept
    assert len(kept) == 5 and sales[kept].min() >= np.delete(sales, kept).max()
    assert "the 5 most bought of 30 articles" in repr(model)
    ids, _ = model.recommend(WARM, k=N_ARTICLES)
    rest = [a for a in range(N_ARTICLES) if a not in kept]
    by_sales = sorted(rest, key=lambda a: (-sales[a], a))
    for row in ids:
        if model.filters_bought:
            row = row[row >= 0]
        assert set(row[:len(row) - len(rest)]) <= set(kept)
        assert row[len(row) - len(rest):].tolist() == by_sales


@pytest.mark.parametrize("name, grid", [("rp3beta", (0.0, 0.25, 0.5, 0.75, 1.0)), ("ease", (50.0, 200.0, 1000.0))])
def test_the_setting_comes_from_the_grid_chosen_on_the_last_week(name, grid):
    model = create_model(name).fit(random_interactions(), AS_OF)
    assert model.choice.value in grid and model.choice.window == (AS_OF - dt.timedelta(days=6), AS_OF)
    assert model.choice.customers > 0 and 0 <= model.choice.map_at_12 <= 1
    assert model.filters_bought == model.choice.drop_bought and "chosen on" in repr(model)
    # nothing bought in the week before as_of: nothing to choose on, the defaults stay
    later = create_model(name).fit(random_interactions(), AS_OF + dt.timedelta(days=30))
    assert later.choice.window is None and (later.choice.value, later.filters_bought) == (later.default, False)


def test_a_walk_where_nobody_re_buys_chooses_to_drop_bought_articles():
    # pairs of customers (2g, 2g+1) share article 3g; each also bought one of its own (3g+1, 3g+2) two weeks ago,
    # and in the last week buys its partner's: from each customer the walk reaches its own articles first, which
    # never come back, so dropping them ranks the partner's article first
    rows = []
    for g in range(10):
        for c, own, partner in ((2 * g, 3 * g + 1, 3 * g + 2), (2 * g + 1, 3 * g + 2, 3 * g + 1)):
            rows += [(c, 3 * g, 14), (c, own, 14), (c, partner, 2)]
    c, a, d = (np.array(x) for x in zip(*rows))
    model = create_model("rp3beta").fit(Interactions(c, a, np.datetime64(AS_OF, "D") - d, 20, 30), AS_OF)
    assert model.choice.drop_bought and model.choice.map_at_12 == 1.0 and model.choice.customers == 20


class Fixed(Recommender):
    """Dense scores given up front (ties, NaN, -inf), to pin the dense path's exact top-k."""

    def __init__(self, matrix):
        super().__init__(cold_start=False)
        self.matrix = np.asarray(matrix, np.float32)

    def _fit(self, interactions, as_of):
        pass

    def score_all(self, customer_indices):
        return self.matrix[customer_indices].copy()


def test_dense_top_k_is_exact_on_ties_nan_and_inf():
    nan, inf = np.nan, np.inf
    matrix = [[1, 3, 3, 0, 3, 2],  # three-way tie across the boundary: the smaller indices win
              [nan, 1, -inf, 1, nan, 0],  # NaN never ranks; -inf only fills the last slots
              [-inf, -inf, -inf, -inf, -inf, 5]]
    empty = Interactions(np.zeros(0, np.int32), np.zeros(0, np.int32), np.zeros(0, "datetime64[D]"), 3, 6)
    model = Fixed(matrix).fit(empty, AS_OF)
    ids, scores = model.recommend(np.arange(3), k=2)
    assert ids.tolist() == [[1, 2], [1, 3], [5, -1]]
    ids, _ = model.recommend(np.arange(3), k=6)
    assert ids.tolist() == [[1, 2, 4, 5, 0, 3], [1, 3, 5, -1, -1, -1], [5, -1, -1, -1, -1, -1]]


def test_gnn_ranks_its_candidates_by_the_rankers_score(interactions):
    from scipy.special import ndtr
    from scipy.stats import rankdata

    from hmgnn.ranking.pairs import feature_matrix

    model = untrained_gnn().fit(interactions, AS_OF)
    pairs, scores = model.ranked_pairs(WARM)
    ids, vals = model.recommend(WARM, k=N_ARTICLES)
    for row, customer in enumerate(WARM):
        mine = pairs.customer == customer
        n = mine.sum()
        assert set(ids[row][:n]) == set(pairs.article[mine])  # the candidates first
        order = np.lexsort((pairs.article[mine], -scores[mine]))  # ties: the smaller article
        np.testing.assert_array_equal(ids[row][:n], pairs.article[mine][order])
        # then every other article, by the mean of its recent-sales percentile and the GNN score's (normal) one
        rest = ids[row][n:]
        gnn = model.gnn.dense(np.array([customer])).double()[0].numpy()
        expected = rankdata(model.snapshot.trend) / N_ARTICLES + ndtr((gnn - gnn.mean()) / (gnn.std(ddof=1) + 1e-6))
        assert len(rest) == N_ARTICLES - n and np.all(np.diff(expected[rest]) <= 1e-5)
        assert (vals[row][:n] > 0.5).all() and (vals[row][n:] < 0.5).all()  # one scale: candidates above 0.5
    np.testing.assert_allclose(scores, model.ranker.predict(feature_matrix(model.snapshot, pairs)))
    # one customer at a time (as `serve` asks) gives the batch's answer
    for customer in WARM[:5]:
        single_ids, _ = model.recommend(int(customer), k=12)
        np.testing.assert_array_equal(single_ids, ids[list(WARM).index(customer), :12])

"""The ranking stage: labels and candidate recall for any customer index, the GNN's scores it reads, its recent-
article pool, and the ranks of the scores."""

import datetime as dt

import numpy as np
import pytest
import torch

from hmgnn.interactions import Interactions, LabelWindow
from hmgnn.models.gnn import HeteroSAGE, dot_scores, own_edge_basis
from hmgnn.models.node_inputs import OwnEdges
from hmgnn.models.base import top_k
from hmgnn.ranking import candidates
from hmgnn.ranking.candidates import GNNScores, candidate_pairs, top_columns
from hmgnn.ranking.features import ArticleMeta, Snapshot
from hmgnn.ranking.fit import window_rows
from hmgnn.ranking.pairs import rank_within


def test_labels_hold_for_customer_indices_whose_pair_keys_pass_int32():
    # customer x article keys beyond 2**31: 29,999 * 100,000 + 99,999 (customer indices are stored as int32)
    n_customers, n_articles = 30_000, 100_000
    day = np.datetime64("2020-09-01", "D")
    purchases = Interactions(np.array([5, 5, 29_999, 29_999, 29_999], np.int32),
                             np.array([3, 3, 99_999, 99_999, 7], np.int32),
                             np.array([day, day + 9, day, day + 9, day + 10]), n_customers, n_articles)
    meta = ArticleMeta(np.arange(n_articles, dtype=np.int32), {})
    window = LabelWindow(dt.date(2020, 9, 7), dt.date(2020, 9, 14))
    pairs, labels, _, customers, stats = window_rows(purchases, window, meta, {"bought": 5}, None, max_customers=10,
                                                     seed=0)
    assert pairs.customer.dtype == np.int64 and customers.tolist() == [5, 29_999]
    assert sorted(zip(pairs.customer.tolist(), pairs.article.tolist(), labels.tolist())) == [
        (5, 3, 1.0), (29_999, 99_999, 1.0)]
    assert stats["purchases"] == 3 and stats["recall"]["all"] == 2 / 3  # article 7 was never bought before


@pytest.mark.parametrize("decoder", ["dot", "mlp"])
def test_gnn_moments_and_pair_scores_match_the_dense_rows(decoder):
    # the dot decoder's mean and spread come from the embeddings (no pass over the articles): they must equal the
    # dense rows' mean and sample standard deviation, and pairs scored alone must equal the dense rows' entries
    torch.manual_seed(0)
    model = HeteroSAGE(num_customers=40, num_articles=300, hidden_channels=8, decoder=decoder).eval()
    customer_emb, article_emb = torch.randn(40, 8) + 0.5, torch.randn(300, 8) * 0.3 + 1.0
    gnn = GNNScores(model, customer_emb, article_emb, torch.device("cpu"))
    customers = np.array([3, 0, 39, 17])
    dense = gnn.dense(customers)
    mean, std = gnn.moments(customers)
    torch.testing.assert_close(mean, dense.mean(1), atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(std, dense.std(1) + 1e-6, atol=1e-5, rtol=1e-5)
    rows, articles = np.array([0, 0, 2, 3]), np.array([5, 299, 0, 42])
    alone, with_dense = gnn.pairs(customers, rows, articles), gnn.pairs(customers, rows, articles, dense)
    np.testing.assert_allclose(alone[0], dense[rows, articles].numpy(), rtol=1e-5)
    np.testing.assert_allclose(alone[0], with_dense[0], rtol=1e-5)
    np.testing.assert_allclose(alone[1], with_dense[1], rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(alone[1], ((dense[rows, articles] - mean[rows]) / std[rows]).numpy(), rtol=1e-4,
                               atol=1e-5)


@pytest.mark.parametrize("decoder", ["dot", "mlp"])
def test_own_edge_term_adds_to_the_pairs_bought_in_every_score(decoder):
    # the own-edge term: dense rows, top-N (over every article and over a list), moments and pairs must all be the
    # embeddings' scores plus w . basis on exactly the pairs bought before the as-of day (brute force here)
    torch.manual_seed(0)
    n_customers, n_articles = 30, 200
    model = HeteroSAGE(num_customers=n_customers, num_articles=n_articles, hidden_channels=8, decoder=decoder,
                       own_edges=True).eval()
    with torch.no_grad():
        model.own.weight.copy_(torch.tensor([[3.0, 1.5, 2.0, -1.0, 0.5]]))
    rng = np.random.default_rng(0)
    day = np.datetime64("2020-09-01", "D")
    c = rng.integers(0, n_customers, 400).astype(np.int32)
    a = rng.integers(0, n_articles, 400).astype(np.int32)
    t = day + rng.integers(0, 60, 400)
    as_of = dt.date(2020, 10, 31)
    own = OwnEdges.of(Interactions(c, a, t, n_customers, n_articles), as_of)
    customer_emb, article_emb = torch.randn(n_customers, 8), torch.randn(n_articles, 8)
    gnn = GNNScores(model, customer_emb, article_emb, torch.device("cpu"), own=own)
    plain = GNNScores(HeteroSAGE(num_customers=n_customers, num_articles=n_articles, hidden_channels=8,
                                 decoder=decoder).eval(), customer_emb, article_emb, torch.device("cpu"))
    if decoder == "mlp":
        plain.model.mlp.load_state_dict(model.mlp.state_dict())
    who = np.array([4, 0, 29, 11, 4])
    expected = plain.dense(who).clone()
    for row, cust in enumerate(who):
        for art in range(n_articles):
            mine = (c == cust) & (a == art)
            if mine.any():
                days = (np.datetime64(as_of, "D") - t[mine].max()).astype(int)
                basis = own_edge_basis(torch.tensor([float(mine.sum())]), torch.tensor([float(days)]))
                expected[row, art] += float(model.own_term(basis).detach()[0])
    assert (expected != plain.dense(who)).any()  # the data do have pairs bought before
    dense = gnn.dense(who)
    torch.testing.assert_close(dense, expected, atol=1e-5, rtol=1e-5)
    mean, std = gnn.moments(who)
    torch.testing.assert_close(mean, expected.mean(1), atol=1e-4, rtol=1e-4)
    torch.testing.assert_close(std, expected.std(1) + 1e-6, atol=1e-4, rtol=1e-4)
    listed = np.arange(0, n_articles, 3)
    torch.testing.assert_close(gnn.dense(who, listed), expected[:, listed], atol=1e-5, rtol=1e-5)
    rows, top = gnn.top(who, 7, listed)
    best = listed[top_k(expected[:, listed], 7)[1].numpy()]
    assert [sorted(top[rows == r].tolist()) for r in range(len(who))] == [sorted(b.tolist()) for b in best]
    pair_rows, pair_articles = np.repeat(np.arange(len(who)), 3), rng.integers(0, n_articles, 3 * len(who))
    scores, _ = gnn.pairs(who, pair_rows, pair_articles)
    np.testing.assert_allclose(scores, expected[pair_rows, pair_articles].numpy(), rtol=1e-5, atol=1e-5)


def test_rank_within_ranks_each_customer_and_leaves_missing_scores_unranked():
    # a source that is off gives NaN scores: their rank must be NaN too, not the rows' order (which would leak the
    # article index into the ranker)
    customers = np.array([1, 1, 1, 4, 4])
    ranks = rank_within(customers, np.array([0.2, 0.9, 0.5, np.nan, 0.1], np.float32))
    np.testing.assert_array_equal(ranks[:3], [3, 1, 2])
    assert np.isnan(ranks[3]) and ranks[4] == 1
    assert np.isnan(rank_within(customers, np.full(5, np.nan, np.float32))).all()


def test_gnn_candidates_come_from_the_recently_sold_articles_only():
    torch.manual_seed(0)
    n_customers, n_articles = 6, 50
    day = np.datetime64("2020-09-01", "D")
    # articles 0-9 sold 40 days before the snapshot, 10-19 within its last week; 20-49 never
    articles = np.r_[np.arange(10), np.arange(10, 20)].astype(np.int32)
    customers = (np.arange(20) % n_customers).astype(np.int32)
    t_dat = np.r_[np.full(10, day), np.full(10, day + 35)]
    purchases = Interactions(customers, articles, t_dat, n_customers, n_articles)
    snapshot = Snapshot(purchases, dt.date(2020, 10, 6), ArticleMeta(np.arange(n_articles, dtype=np.int32), {}))
    model = HeteroSAGE(num_customers=n_customers, num_articles=n_articles, hidden_channels=8).eval()
    gnn = GNNScores(model, torch.randn(n_customers, 8), torch.randn(n_articles, 8), torch.device("cpu"))
    who = np.arange(n_customers)
    every = candidate_pairs(snapshot, who, {"gnn": 5}, gnn=gnn)
    recent = candidate_pairs(snapshot, who, {"gnn": 5}, gnn=gnn, gnn_recent_days=7)
    assert set(every.article.tolist()) - set(range(10, 20))  # unrestricted, the top-5 reach unsold articles
    assert set(recent.article.tolist()) <= set(range(10, 20)) and len(recent.article) == 5 * n_customers
    # each customer's five are the best of the pool, with the same scores and z-scores as unrestricted pairs
    dense = gnn.dense(who)
    for c in who:
        mine = recent.customer == c
        best = 10 + torch.topk(dense[c, 10:20], 5).indices.numpy()
        assert sorted(recent.article[mine].tolist()) == sorted(best.tolist())
    scores, z = gnn.pairs(who, recent.customer, recent.article)
    np.testing.assert_allclose(recent.gnn_score, scores, rtol=1e-6)
    np.testing.assert_allclose(recent.gnn_zscore, z, rtol=1e-5, atol=1e-6)


def test_gnn_scores_of_a_small_batch_are_each_customers_own_bit_for_bit():
    # serve ranks its waiting requests together and promises each the one-customer answer
    torch.manual_seed(0)
    model = HeteroSAGE(num_customers=100, num_articles=3000, hidden_channels=64).eval()
    gnn = GNNScores(model, torch.randn(100, 64), torch.randn(3000, 64), torch.device("cpu"))
    batch = np.array([7, 3, 99, 42, 0, 7, 58, 13, 21, 34, 55, 89, 1])  # more than one block, a repeat
    dense, (mean, std) = gnn.dense(batch), gnn.moments(batch)
    for row, c in enumerate(batch):
        assert torch.equal(dense[row], gnn.dense(np.array([c]))[0])
        one_mean, one_std = gnn.moments(np.array([c]))
        assert torch.equal(mean[row], one_mean[0]) and torch.equal(std[row], one_std[0])
    listed = np.arange(0, 3000, 7)
    assert torch.equal(gnn.dense(batch, listed), dense[:, listed])


@pytest.mark.parametrize("columns", [3, 40, 997, 5000])
def test_top_columns_are_top_k_s_exact_on_ties(columns):
    # the candidates' top-N searches groups of columns: the same set as a top-k over every column, ties to the
    # smaller column (many ties here: rounded scores), a NaN never chosen over a number, fewer columns than N
    torch.manual_seed(0)
    scores = (torch.randn(70, columns) * 3).round()
    scores[5, ::3] = float("nan")
    scores[6] = 1.0  # a row of one value: the smallest columns
    for n in (1, 12, 40):
        got = top_columns(scores, n)
        want = top_k(scores.clone(), min(n, columns))[1].sort(1).values
        assert torch.equal(got, want)
    assert torch.equal(top_columns(scores, 12)[6], torch.arange(min(12, columns)))


@pytest.mark.parametrize("chunk", [candidates.TOP_CHUNK, 700])
def test_gnn_top_n_is_the_top_n_of_the_dense_rows(monkeypatch, chunk):
    # the candidates' top-N is computed a chunk of rows at a time and never holds a batch's scores: it must be the
    # top-N of the dense rows, ties to the smaller article (integer embeddings: exact scores, many ties), with or
    # without an article list, in a small batch (serve's blocks) and across chunk edges
    monkeypatch.setattr(candidates, "TOP_CHUNK", chunk)
    torch.manual_seed(0)
    model = HeteroSAGE(num_customers=300, num_articles=500, hidden_channels=16).eval()
    gnn = GNNScores(model, torch.randint(-2, 3, (300, 16)).float(), torch.randint(-2, 3, (500, 16)).float(),
                    torch.device("cpu"))
    listed = np.arange(0, 500, 3)
    for who in (np.arange(0, 300, 2), np.array([7, 3, 99, 42, 0, 7, 58, 13, 21, 34, 55, 89, 1])):
        for articles in (None, listed):
            dense = gnn.dense(who, articles)
            want = top_k(dense.clone(), 12)[1].sort(1).values.numpy()
            rows, got = gnn.top(who, 12, articles)
            np.testing.assert_array_equal(rows, np.repeat(np.arange(len(who)), 12))
            np.testing.assert_array_equal(got, (want if articles is None else listed[want]).ravel())
            np.testing.assert_array_equal(gnn.top(who, 12, articles, gnn.dense(who))[1], got)  # rows given
    assert gnn.top(np.arange(5), 600)[1].reshape(5, -1).shape == (5, 500)  # more asked than there are articles


def test_kept_top_n_is_read_back_for_kept_customers_only():
    torch.manual_seed(0)
    model = HeteroSAGE(num_customers=300, num_articles=500, hidden_channels=16).eval()
    gnn = GNNScores(model, torch.randn(300, 16), torch.randn(500, 16), torch.device("cpu"))
    listed = np.arange(0, 500, 3)
    who = np.arange(0, 300, 2)
    want = gnn.top(who, 12, listed)
    gnn.keep_top(np.arange(0, 200), 12, listed)
    kept = gnn._kept[2]
    assert (kept[:200] >= 0).all() and (kept[200:] == -1).all()
    kept[0] = listed[:12]  # mark a kept row: a later `top` must read it back
    rows, got = gnn.top(np.array([0, 2]), 12, listed)
    np.testing.assert_array_equal(got[:12], listed[:12])
    kept[0] = want[1][:12]
    for part in (who[who < 200], who[who >= 150]):  # kept only, and some not kept (scored as usual)
        np.testing.assert_array_equal(gnn.top(part, 12, listed)[1], want[1][np.repeat(np.isin(who, part), 12)])
    # another n or another list: scored as usual, not read from the table
    kept[:] = 0
    top5 = top_k(gnn.dense(who, listed), 5)[1].sort(1).values.numpy()
    np.testing.assert_array_equal(gnn.top(who, 5, listed)[1], listed[top5].ravel())
    np.testing.assert_array_equal(gnn.top(who, 12)[1], top_k(gnn.dense(who), 12)[1].sort(1).values.numpy().ravel())


def test_mlp_decoder_scores_each_chunk_of_customers_once(monkeypatch):
    # its mean and spread need every article's score: the candidates' top-N and the pairs' z-scores share one pass
    torch.manual_seed(0)
    n_customers, n_articles = 6, 50
    day = np.datetime64("2020-09-01", "D")
    purchases = Interactions((np.arange(20) % n_customers).astype(np.int32), np.arange(20, dtype=np.int32),
                             np.full(20, day), n_customers, n_articles)
    snapshot = Snapshot(purchases, dt.date(2020, 9, 2), ArticleMeta(np.arange(n_articles, dtype=np.int32), {}))
    model = HeteroSAGE(num_customers=n_customers, num_articles=n_articles, hidden_channels=8,
                       decoder="mlp").eval()
    gnn = GNNScores(model, torch.randn(n_customers, 8), torch.randn(n_articles, 8), torch.device("cpu"))
    who = np.arange(n_customers)
    dense = gnn.dense(who)
    calls = []
    monkeypatch.setattr(gnn, "_scores", lambda c, a, listed=None, f=gnn._scores: calls.append(len(c)) or f(c, a, listed))
    got = candidate_pairs(snapshot, who, {"gnn": 5}, gnn=gnn)
    assert len(calls) == 1
    want = top_k(dense.clone(), 5)[1].sort(1).values.numpy()
    np.testing.assert_array_equal(got.article, want.ravel())
    np.testing.assert_allclose(got.gnn_score, dense[got.customer, got.article].numpy(), rtol=1e-6)


def test_dot_scores_equal_the_matrix_product_and_keep_autograd():
    torch.manual_seed(0)
    c, a = torch.randn(37, 64), torch.randn(1000, 64)
    torch.testing.assert_close(dot_scores(c, a), c @ a.t(), rtol=1e-6, atol=1e-5)
    torch.testing.assert_close(dot_scores(c[:5], a), c[:5] @ a.t(), rtol=1e-6, atol=1e-5)  # few rows: BLAS
    assert dot_scores(c[:0], a).shape == (0, 1000)
    c.requires_grad_(True)
    dot_scores(c, a).sum().backward()  # under autograd: torch's own product, with its gradient
    torch.testing.assert_close(c.grad, a.sum(0).expand(37, -1), rtol=1e-4, atol=1e-4)


def test_variant_candidates_are_the_other_articles_of_bought_products():
    # products: articles 0-3 -> 0, 4-5 -> 1, 6-9 -> 2; customer 0 bought 0 twice and 4 once, customer 1 bought 9
    product = np.array([0, 0, 0, 0, 1, 1, 2, 2, 2, 2], np.int32)
    day = np.datetime64("2020-09-01", "D")
    purchases = Interactions(np.array([0, 0, 0, 1], np.int32), np.array([0, 0, 4, 9], np.int32),
                             np.full(4, day), 3, 10)
    snapshot = Snapshot(purchases, dt.date(2020, 9, 2), ArticleMeta(product, {}))
    pairs = candidate_pairs(snapshot, np.array([0, 1, 2]), {"variant": 3})
    got = sorted(zip(pairs.customer.tolist(), pairs.article.tolist()))
    # customer 0: product 0's other colours first (bought twice), then product 1's; at most 3; customer 2: none
    assert got == [(0, 1), (0, 2), (0, 3), (1, 6), (1, 7), (1, 8)]
    two = candidate_pairs(snapshot, np.array([0]), {"variant": 4})
    assert sorted(two.article.tolist()) == [1, 2, 3, 5]


@pytest.mark.parametrize("gnn_knows", [True, False])
def test_the_non_candidates_mix_follows_the_signal_that_ranks_validation_pairs(gnn_knows):
    # four customers who bought articles 0-3; in the window each buys article 10 + c, never sold, and not 20 + c,
    # a recent bestseller (customer 4 bought them), or the reverse. The GNN scores 10 + c high and 20 + c low:
    # when it is right the mix must lean to its percentile, when it is wrong to recent sales (ties: 0.5)
    import polars as pl

    from hmgnn.config import RankerConfig
    from hmgnn.ranking.fit import choose_rest_mix

    n_c, n_a, day = 5, 40, np.datetime64("2020-09-01", "D")
    customers = np.r_[np.arange(4), np.arange(4), np.full(8, 4)].astype(np.int32)
    articles = np.r_[np.arange(4), np.arange(4), np.full(4, 20), np.arange(21, 25)].astype(np.int32)
    purchases = Interactions(customers, articles, np.full(16, day + 5), n_c, n_a)
    meta = ArticleMeta(np.arange(n_a, dtype=np.int32), {})
    c_emb, a_emb = torch.eye(n_c, 8), torch.zeros(n_a, 8)
    for c in range(4):
        a_emb[10 + c, c], a_emb[20 + c, c] = 3.0, -3.0
        a_emb[30 + c, c] = a_emb[34 + c, c] = 40.0  # two far better articles: 10 + c's percentile is only high
    model = HeteroSAGE(num_customers=n_c, num_articles=n_a, hidden_channels=8).eval()
    bought, passed = (np.arange(10, 14), np.arange(20, 24)) if gnn_knows else (np.arange(20, 24), np.arange(10, 14))
    pairs = pl.DataFrame({"customer_index": np.r_[np.arange(4), np.arange(4)],
                          "article_index": np.r_[bought, passed], "label": np.r_[np.ones(4), np.zeros(4)]})
    mix, report = choose_rest_mix(purchases, LabelWindow(dt.date(2020, 9, 7), dt.date(2020, 9, 14)), meta,
                                  RankerConfig(gnn_candidates=0, variant_candidates=0, popular_candidates=0,
                                               trending_candidates=0, walk_candidates=0),
                                  lambda seen, as_of: GNNScores(model, c_emb, a_emb, torch.device("cpu")), pairs,
                                  seed=0)
    aucs = report["auc_by_mix"]
    assert report["candidate_share"] == 0 and isinstance(mix, float) and aucs[f"{mix:.1f}"] == 1.0
    if gnn_knows:  # the even mix lets the bestsellers win
        assert mix < 0.5 and aucs["0.5"] < 1.0 and aucs["1.0"] == 0.0
    else:
        assert mix >= 0.5 and aucs["0.0"] == 0.0

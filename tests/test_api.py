"""`hmgnn.load()`: string ids in, polars frames out, the same answers as the CLI; the README's example runs."""

from __future__ import annotations

import re
import sys
from pathlib import Path

import numpy as np
import polars as pl
import pytest

import hmgnn
from hmgnn import recommend, train
from hmgnn.config import load_config
from hmgnn.errors import InputError

from tables_fixture import FAST_TRAIN as FAST

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def workdir(trained_workdir) -> Path:
    return trained_workdir


@pytest.fixture(scope="module")
def rec(workdir):
    return hmgnn.load(workdir)


def test_load_gives_the_trained_gnn_from_the_workdir_or_its_model_folder(rec, workdir):
    assert rec.name == "gnn" and "gnn" in repr(rec)
    assert hmgnn.load(workdir / "model").name == "gnn"
    assert hmgnn.load(workdir, model="popular").name == "popular"
    with pytest.raises(InputError, match="no such folder"):
        hmgnn.load(workdir / "nope")


def test_recommend_matches_the_cli(rec, workdir):
    customers = rec.customer_ids()[:3]
    frame = rec.recommend(customers, k=5)
    assert frame.columns == ["customer_id", "rank", "article_id", "score", "fallback", "why", "sources"]
    assert frame.schema["sources"] == pl.List(pl.String)
    assert frame.height == 15 and frame["article_id"].str.len_chars().unique().to_list() == [10]
    for customer in customers:  # the why and the sources of each article too
        cli = recommend.run(load_config(None, ["recommend.k=5"], workdir=workdir), customer_id=customer)
        mine = frame.filter(pl.col("customer_id") == customer)
        assert mine["article_id"].to_list() == [r["article_id"] for r in cli.recommendations]
        np.testing.assert_allclose(mine["score"].to_numpy(), [r["score"] for r in cli.recommendations], rtol=1e-5)
        assert mine["why"].to_list() == [r["why"] for r in cli.recommendations]
        assert mine["sources"].to_list() == [r["sources"] for r in cli.recommendations]
    # an unknown (well-formed) id gets the labelled fallback, a malformed one an error naming it
    unknown = rec.recommend(["ab" * 32], k=3)
    assert unknown["fallback"].null_count() == 0 and unknown["sources"].to_list() == [["popular"]] * 3
    assert set(unknown["why"].to_list()) <= {"a bestseller this week", "one of the best sellers of all time"}
    with pytest.raises(ValueError, match=r"customer_ids\[1\]: .*64 hexadecimal"):
        rec.recommend([customers[0], "nope"])  # an argument error: a ValueError naming the argument
    with pytest.raises(ValueError, match="article_ids: an article id must be digits"):
        rec.similar(["12ab"])


def test_similar_score_and_embeddings(rec, workdir):
    customer = rec.customer_ids()[0]
    top = rec.recommend([customer], k=3)
    near = rec.similar([top["article_id"][0]], k=4)
    assert near.height == 4 and top["article_id"][0] not in near["similar_article_id"].to_list()
    assert near["score"].is_sorted(descending=True)
    # score() is the score recommend() ranked by
    np.testing.assert_allclose(rec.score([customer] * 3, top["article_id"].to_list()), top["score"].to_numpy(),
                               rtol=1e-5)
    customers, articles = rec.embeddings()
    assert customers.columns == ["customer_id", "embedding"] and articles.columns == ["article_id", "embedding"]
    assert articles.height == pl.read_parquet(workdir / "tables" / "articles.parquet").height
    assert len(articles["embedding"][0]) == 16  # train.hidden
    with pytest.raises(InputError, match="not in tables/articles.parquet"):
        rec.similar(["9999999999"])


def test_a_baseline_has_no_embeddings(workdir):
    popular = hmgnn.load(workdir, model="popular")
    with pytest.raises(ValueError, match="no article embeddings"):
        popular.similar(["0108775015"])
    with pytest.raises(ValueError, match="no embeddings"):
        popular.embeddings()


def test_the_readme_example_runs(workdir, capsys):
    readme = (ROOT / "README.md").read_text()
    section = readme[readme.index("## Python API"):]
    code = re.search(r"```python\n(.*?)```", section, re.S).group(1)
    names: dict = {}
    exec(compile(code.replace('"work/demo"', repr(str(workdir))), "README.md", "exec"), names)
    rec, customer, top = names["rec"], names["customer"], names["top"]
    # what the example promises: the customer's top 12 in rank order, each with its why; the first one's
    # neighbours (itself excluded) and its score as ranked; an embedding per customer and per article
    assert top["customer_id"].unique().to_list() == [customer] and top["rank"].to_list() == list(range(1, 13))
    assert top["article_id"].str.len_chars().unique().to_list() == [10] and top["why"].str.len_chars().min() > 0
    assert top["score"].is_sorted(descending=True)
    near = rec.similar([top["article_id"][0]], k=5)
    assert near.height == 5 and top["article_id"][0] not in near["similar_article_id"].to_list()
    np.testing.assert_allclose(rec.score([customer], [top["article_id"][0]]), top["score"][:1].to_numpy(), rtol=1e-5)
    customers, articles = names["customers"], names["articles"]
    assert set(rec.customer_ids()) <= set(customers["customer_id"].to_list())
    assert customers["customer_id"].n_unique() == customers.height and articles["article_id"].n_unique() == articles.height
    assert customers["embedding"].dtype == articles["embedding"].dtype  # one fixed width for both
    out = capsys.readouterr().out
    assert top["article_id"][0] in out and "similar_article_id" in out


def test_export_writes_both_embedding_tables(workdir, tmp_path, capsys):
    from hmgnn.cli import main

    out = tmp_path / "emb.parquet"
    try:
        main(["export", "-w", str(workdir), "--embeddings", str(out)])
    except SystemExit as done:
        assert not done.code
    frame = pl.read_parquet(out)
    assert frame.columns == ["kind", "id", "embedding"] and set(frame["kind"]) == {"customer", "article"}
    assert frame["embedding"].list.len().unique().to_list() == [16]
    assert [p.name for p in tmp_path.iterdir()] == ["emb.parquet"]  # nothing left aside


def _cli_out(capsys, *args) -> str:
    from hmgnn.cli import main

    capsys.readouterr()
    try:
        main([*map(str, args)])
    except SystemExit as done:
        assert not done.code, capsys.readouterr().err
    return capsys.readouterr().out


def test_a_copied_model_folder_answers_as_its_workdir_with_the_workdir_gone(rec, workdir, tmp_path, capsys):
    import shutil

    customers = rec.customer_ids()[:4] + rec.customer_ids(with_history=False)[-1:] + ["ab" * 32]  # warm, cold, unknown
    one = customers[0]
    article = rec.recommend([one], k=1)["article_id"][0]
    before = {"cli": _cli_out(capsys, "recommend", "-w", workdir, "--customer-id", one, "--json"),
              "frame": rec.recommend(customers, k=12), "similar": rec.similar([article], k=5),
              "score": rec.score(customers[:5], [article] * 5), "embeddings": rec.embeddings()}
    _cli_out(capsys, "recommend", "-w", workdir, "--all", "--out", tmp_path / "workdir.csv")
    folder = Path(shutil.copytree(workdir / "model", tmp_path / "elsewhere" / "hm-model"))
    gone = workdir.with_name(workdir.name + "-gone")
    workdir.rename(gone)  # nothing of the workdir is there to be read while the folder answers
    try:
        assert _cli_out(capsys, "recommend", "--model-dir", folder, "--customer-id", one, "--json") == before["cli"]
        _cli_out(capsys, "recommend", "--model-dir", folder, "--all", "--out", tmp_path / "folder.csv")
        assert (tmp_path / "folder.csv").read_bytes() == (tmp_path / "workdir.csv").read_bytes()
        copied = hmgnn.load(folder)
        assert copied.name == "gnn" and copied.customer_ids() == rec.customer_ids()
        assert copied.recommend(customers, k=12).equals(before["frame"])
        assert copied.similar([article], k=5).equals(before["similar"])
        np.testing.assert_array_equal(copied.score(customers[:5], [article] * 5), before["score"])
        for mine, theirs in zip(copied.embeddings(), before["embeddings"]):
            assert mine.equals(theirs)
        assert copied._served.model_fingerprint == rec._served.model_fingerprint  # the same model.pt
        assert hmgnn.load(folder, model="trending").recommend([one]).height == 12  # baselines fit on its purchases
    finally:
        gone.rename(workdir)


def test_the_api_and_the_cli_need_no_extra(workdir):
    """A plain `pip install hmgnn` has neither the serve extra (fastapi, uvicorn) nor click (typer vendors it)."""
    import subprocess

    code = ("import sys\n"
            "for name in ('fastapi', 'uvicorn', 'click'):\n"
            "    sys.modules[name] = None  # importing it fails, as where it is not installed\n"
            "import hmgnn\n"
            "from hmgnn.cli import main\n"
            "rec = hmgnn.load(sys.argv[1])\n"
            "customer = rec.customer_ids()[0]\n"
            "assert rec.recommend([customer], k=3).height == 3\n"
            "main(['recommend', '-w', sys.argv[1], '--customer-id', customer, '--k', '3', '--json'])\n")
    done = subprocess.run([sys.executable, "-c", code, str(workdir)], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    assert '"model": "gnn"' in done.stdout


def test_argument_errors_name_the_argument(rec, workdir):
    n_articles = pl.read_parquet(workdir / "tables" / "articles.parquet").height
    customer = rec.customer_ids()[0]
    article = rec.recommend([customer], k=1)["article_id"][0]
    with pytest.raises(TypeError, match=r"customer_ids\[1\] must be a string .* int 123"):
        rec.recommend([customer, 123])
    with pytest.raises(TypeError, match=r"customer_ids\[0\]"):
        rec.score([123], [article])
    for bad in (0, -1, n_articles + 1, 10**9):  # the limits the CLI and HTTP apply
        with pytest.raises(ValueError, match=f"k must be from 1 to {n_articles:,}"):
            rec.recommend([customer], k=bad)
        with pytest.raises(ValueError, match=f"k must be from 1 to {n_articles:,}"):
            rec.similar([article], k=bad)
    with pytest.raises(TypeError, match="k must be an int"):
        rec.recommend([customer], k=2.5)
    with pytest.raises(TypeError, match="article_ids"):
        rec.similar([1.5])
    assert rec.recommend([customer], k=n_articles).height <= n_articles  # the largest k is accepted


def test_filter_already_bought(rec, workdir):
    tables = workdir / "tables"
    customers = pl.read_parquet(tables / "customers.parquet")
    purchases = pl.read_parquet(tables / "transactions.parquet")
    articles = pl.read_parquet(tables / "articles.parquet")
    buyer = purchases["customer_index"].value_counts(sort=True)["customer_index"][0]  # the most purchases
    customer = customers.filter(pl.col("customer_index") == buyer)["customer_id"].item()
    own = articles.filter(pl.col("article_index").is_in(
        purchases.filter(pl.col("customer_index") == buyer)["article_index"].implode()))["article_id"]
    own = {f"{a:010d}" for a in own}
    every = rec.recommend([customer], k=articles.height)["article_id"].to_list()
    kept = rec.recommend([customer], k=12, filter_already_bought=True)["article_id"].to_list()
    assert own & set(every[:12]) and not own & set(kept)
    assert kept == [a for a in every if a not in own][:12]

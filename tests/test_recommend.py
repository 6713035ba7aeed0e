"""`hmgnn recommend` on a hand-made tables/: one customer as a table or JSON (with the labelled cold-start
fallback), every customer as the Kaggle submission CSV or parquet, and the one-line errors."""

import json

import numpy as np

import polars as pl
import pytest
from typer.testing import CliRunner

from hmgnn import recommend
from hmgnn.cli import app, main
from hmgnn.config import load_config
from hmgnn.errors import InputError, UsageError
from test_evaluate import AGES, HISTORY, TEST, VALIDATION, customer_id, write_workdir

# Fit on every transaction (up to 2020-09-20): the last 7 days hold article 0 three times, 5 twice, 2 and 9 once,
# so the global bestsellers are 0, 5, 2, 9, then the rest by all-time sales (1, 3, 4, 6, 7), then 8.
GLOBAL = [0, 5, 2, 9, 1, 3, 4, 6, 7, 8]
# Customer 6 (aged 28) has no history; in the 25-34 band only customer 1 bought lately (article 9).
BAND_25_34 = [9, 0, 5, 2, 1, 3, 4, 6, 7, 8]


def article_id(i: int) -> str:
    return f"{108775015 + 1000 * i:010d}"


@pytest.fixture(scope="module")
def workdir(tmp_path_factory):
    return write_workdir(tmp_path_factory.mktemp("rec") / "w", split=False)


def _cfg(workdir, model="popular", k=12):
    return load_config(None, [f"recommend.model='{model}'", f"recommend.k={k}"], workdir=workdir)


def test_one_customer_with_history(workdir):
    recs = recommend.run(_cfg(workdir, "repurchase", k=4), customer_id=customer_id(5))
    assert recs.fallback is None
    # customer 5's own purchases, most recent first: 5 (09-18), 2 (09-17), 4 (09-13), 3 (09-12)
    assert [r["article_id"] for r in recs.recommendations] == [article_id(a) for a in (5, 2, 4, 3)]
    first = recs.recommendations[0]
    assert first["rank"] == 1 and first["prod_name"] == "Strap top 5" and first["colour_group_name"] == "White"
    assert first["product_type_name"] == "Vest top" and isinstance(first["score"], float)


def test_auto_is_trending_until_a_model_is_trained(workdir, capsys):
    cfg = load_config(None, [], workdir=workdir)
    assert cfg.recommend.model == "auto" and not (workdir / "model").exists()
    recs = recommend.run(cfg, customer_id=customer_id(5))
    assert recs.model == "trending" and "no trained model" in capsys.readouterr().err
    assert recs.recommendations == recommend.run(_cfg(workdir, "trending"), customer_id=customer_id(5)).recommendations


@pytest.mark.parametrize("who, expected, words", [
    (6, BAND_25_34, "aged 25-34"),
    (7, GLOBAL, "no age"),
    (None, GLOBAL, "not in tables/customers.parquet"),
])
def test_cold_start_fallback_is_labelled(workdir, who, expected, words):
    cid = customer_id(who) if who is not None else "ab" * 32  # well formed, but nobody has it
    recs = recommend.run(_cfg(workdir), customer_id=cid.upper())  # ids are case-insensitive
    assert words in recs.fallback
    assert [r["article_id"] for r in recs.recommendations] == [article_id(a) for a in expected]  # k clipped to 10


@pytest.mark.parametrize("bad", ["xyz", "g" * 64, "a" * 63, ""])
def test_bad_id_is_an_input_error(workdir, bad):
    with pytest.raises(InputError, match="customer id must be 64 hexadecimal characters"):
        recommend.run(_cfg(workdir), customer_id=bad)


def test_options_that_do_not_fit_together(workdir, tmp_path):
    with pytest.raises(UsageError, match="either --customer-id"):
        recommend.run(_cfg(workdir))
    with pytest.raises(UsageError, match="not both"):
        recommend.run(_cfg(workdir), customer_id=customer_id(0), all_customers=True, out=tmp_path / "a.csv")
    with pytest.raises(UsageError, match="--all needs --out"):
        recommend.run(_cfg(workdir), all_customers=True)
    with pytest.raises(UsageError, match=r"\.csv"):
        recommend.run(_cfg(workdir), all_customers=True, out=tmp_path / "recs.txt")


def test_all_customers_submission_csv(workdir, tmp_path):
    out = recommend.run(_cfg(workdir, "popular", k=3), all_customers=True, out=tmp_path / "sub" / "submission.csv")
    lines = out.read_text().splitlines()
    assert lines[0] == "customer_id,prediction"
    assert len(lines) == 1 + len(AGES)
    rows = dict(line.split(",") for line in lines[1:])
    assert rows[customer_id(0)] == " ".join(article_id(a) for a in GLOBAL[:3])  # warm: popular
    assert rows[customer_id(6)] == " ".join(article_id(a) for a in BAND_25_34[:3])  # cold: the band's fallback
    assert [p.name for p in out.parent.iterdir()] == ["submission.csv"]  # no temporary left over


def test_all_customers_parquet(workdir, tmp_path):
    out = recommend.run(_cfg(workdir, "trending", k=12), all_customers=True, out=tmp_path / "recs.parquet")
    frame = pl.read_parquet(out)
    assert frame.columns == ["customer_id", "rank", "article_id", "score"]
    assert frame.height == len(AGES) * 10  # k clipped to the 10 articles
    first = frame.filter(pl.col("customer_id") == customer_id(0)).sort("rank")
    assert first["rank"].to_list() == list(range(1, 11))
    assert first["score"].is_sorted(descending=True)
    assert frame.schema["article_id"] == pl.String  # zero-padded, as in the Kaggle files
    assert set(frame["article_id"].str.len_chars().to_list()) == {10} and first["article_id"][0].startswith("0")


def test_cli_json_table_and_errors(workdir, capsys):
    runner = CliRunner()
    res = runner.invoke(app, ["recommend", "-w", str(workdir), "--customer-id", customer_id(6), "--k", "2",
                              "--model", "popular", "--json"])
    assert res.exit_code == 0, res.output
    payload = json.loads(res.stdout)
    assert payload["model"] == "popular" and payload["k"] == 2 and "aged 25-34" in payload["fallback"]
    assert [r["article_id"] for r in payload["recommendations"]] == [article_id(9), article_id(0)]

    res = runner.invoke(app, ["recommend", "-w", str(workdir), "--customer-id", customer_id(5), "--k", "3"])
    assert res.exit_code == 0, res.output
    assert article_id(5) in res.stdout and "Strap top" in res.stdout

    with pytest.raises(SystemExit) as exit_info:
        main(["recommend", "-w", str(workdir), "--customer-id", "nothex"])
    assert exit_info.value.code == 1
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: customer id must be 64 hexadecimal characters") and "\n" not in err


def bought(customer: int) -> set[int]:
    return {a for c, a, _ in HISTORY + VALIDATION + TEST if c == customer}


@pytest.mark.parametrize("model, customer", [("repurchase", 5), ("popular", 5), ("trending", 0), ("popular", 6)])
def test_filter_bought_one_customer(workdir, model, customer):
    every = recommend.run(_cfg(workdir, model, k=10), customer_id=customer_id(customer))
    kept = recommend.run(_cfg(workdir, model, k=4), customer_id=customer_id(customer), filter_bought=True)
    got = [r["article_id"] for r in kept.recommendations]
    assert not {article_id(a) for a in bought(customer)} & set(got)
    # the next-best articles take their places, in the order the model ranks them
    expected = [r["article_id"] for r in every.recommendations if r["article_id"] not in
                {article_id(a) for a in bought(customer)}][:4]
    assert got == expected and len(got) == 4
    if bought(customer):
        assert got != [r["article_id"] for r in every.recommendations][:4]  # the filter changed the answer


def test_filter_bought_all_customers(workdir, tmp_path):
    every = recommend.run(_cfg(workdir, "repurchase", k=10), all_customers=True, out=tmp_path / "every.csv")
    kept = recommend.run(_cfg(workdir, "repurchase", k=3), all_customers=True, out=tmp_path / "kept.csv",
                         filter_bought=True)
    rows_every = dict(line.split(",") for line in every.read_text().splitlines()[1:])
    rows_kept = dict(line.split(",") for line in kept.read_text().splitlines()[1:])
    assert len(rows_kept) == len(AGES)
    for c in range(len(AGES)):
        own = {article_id(a) for a in bought(c)}
        got = rows_kept[customer_id(c)].split()
        assert not own & set(got)
        assert got == [a for a in rows_every[customer_id(c)].split() if a not in own][:3]


def test_cli_filter_bought(workdir):
    res = CliRunner().invoke(app, ["recommend", "-w", str(workdir), "--customer-id", customer_id(5), "--k", "3",
                                   "--model", "repurchase", "--filter-bought", "--json"])
    assert res.exit_code == 0, res.output
    got = [r["article_id"] for r in json.loads(res.stdout)["recommendations"]]
    # customer 5 bought 1..5: the rest by recent sales (0, then 9; 6, 7 before 8 by all-time sales)
    assert got == [article_id(0), article_id(9), article_id(6)]


@pytest.mark.parametrize("args, words", [
    (["--all"], "--all needs --out"),
    (["--customer-id", customer_id(0), "--all", "--out", "x.csv"], "not both"),
    (["--customer-id", customer_id(0), "--out", "x.csv"], "--out goes with --all"),
    (["--all", "--out", "recs.txt"], ".csv"),
    (["--customer-id", customer_id(0), "--k", "0"], "--k"),
    (["--customer-id", customer_id(0), "--k", "13"], "at most 12"),  # 10 articles; the default 12 stays valid
    (["--customer-id", customer_id(0), "--k", "20000"], "--k"),
    (["--customer-id", customer_id(0), "--model", "nosuch"], "nosuch"),
    (["--customer-id", customer_id(0), "--set", "foo"], "section.key=value"),
    (["--customer-id", customer_id(0), "--set", "recommend.k=0"], "recommend.k must be > 0"),
    (["--customer-id", customer_id(0), "--set", "recommend.nosuch=1"], "nosuch"),
])
def test_usage_errors_exit_2(workdir, tmp_path, monkeypatch, capsys, args, words):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(SystemExit) as exit_info:
        main(["recommend", "-w", str(workdir), *args])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert words in err and "Traceback" not in err
    assert not list(tmp_path.iterdir())  # nothing written


def test_data_and_config_file_errors_exit_1(workdir, tmp_path, capsys):
    bad = tmp_path / "bad.toml"
    bad.write_text("[recommend]\nk = 0\n")
    for args in (["-c", str(bad), "--customer-id", customer_id(0)],  # the file is wrong, not the command
                 ["--customer-id", "nothex"]):
        with pytest.raises(SystemExit) as exit_info:
            main(["recommend", "-w", str(workdir), *args])
        assert exit_info.value.code == 1
        err = capsys.readouterr().err.strip()
        assert err.startswith("error: ") and "\n" not in err


def test_piped_output_has_plain_lines(workdir, tmp_path, capsys):
    """stderr is no terminal here (as in a pipe): no spinner or bar residue, no wrapping at 80 columns, and the
    bar's one line says what it counted."""
    main(["recommend", "-w", str(workdir), "--model", "popular", "--all", "--out", str(tmp_path / "s.csv")])
    lines = capsys.readouterr().err.splitlines()
    cold = [line for line in lines if "have no purchase history" in line]
    assert len(cold) == 1 and len(cold[0]) > 80 and cold[0].endswith("(the cold-start fallback)")
    done = [line for line in lines if line.startswith("recommend (popular)")]
    assert len(done) == 1 and f"{len(AGES)} of {len(AGES)} customers" in done[0]
    assert not any(ch in "".join(lines) for ch in "⠋⠙⠹⠸⠼⠴⠦⠧⠇⠏━")
    assert lines[-1].startswith("recommend wrote ")


def test_all_ranks_in_chunks_of_at_most_one_percent(workdir, tmp_path):
    model, _ = recommend.fit_model(_cfg(workdir), "popular")
    sizes = []
    ranked = model.recommend

    def counting(customers, **kwargs):
        sizes.append(len(customers))
        return ranked(customers, **kwargs)

    model.recommend = counting
    index = np.tile(np.arange(len(AGES)), 300)  # 2,400 rows
    ids = np.array([customer_id(i) for i in index.tolist()], dtype=object)
    recommend.write_recommendations(model, index, ids, np.arange(10) + 108775015, tmp_path / "s.csv", k=3,
                                    show_progress=False)
    assert sum(sizes) == len(index) and max(sizes) <= len(index) // 100


def test_each_task_of_a_bar_names_what_it_counts(capsys):
    # a task may count something else than the bar's unit (synth: day passes, then rows); piped, its line says so
    from hmgnn.console import progress

    with progress(unit="rows") as bar:
        rows = bar.add_task("writing", total=3)
        bar.update(rows, completed=3)
        days = bar.add_task("choosing", total=2, unit="day passes")
        bar.update(days, completed=2)
    lines = capsys.readouterr().err.splitlines()
    assert any(line.startswith("writing (3 of 3 rows,") for line in lines)
    assert any(line.startswith("choosing (2 of 2 day passes,") for line in lines)

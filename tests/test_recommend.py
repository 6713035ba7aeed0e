"""`hmgnn recommend` on a hand-made tables/: one customer as a table or JSON (with the labelled cold-start
fallback), every customer as the Kaggle submission CSV or parquet, and the one-line errors."""

import json

import polars as pl
import pytest
from typer.testing import CliRunner

from hmgnn import recommend
from hmgnn.cli import app, main
from hmgnn.config import load_config
from hmgnn.errors import InputError
from test_evaluate import AGES, customer_id, write_workdir

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
    with pytest.raises(InputError, match="either --customer-id"):
        recommend.run(_cfg(workdir))
    with pytest.raises(InputError, match="--all needs --out"):
        recommend.run(_cfg(workdir), all_customers=True)
    with pytest.raises(InputError, match=r"\.csv"):
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

"""`hmgnn ingest`: the contract schema, every input layout, the real-data quirks, and one-line errors for bad input."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import zipfile
from pathlib import Path

import polars as pl
import pytest

from hmgnn import ingest
from hmgnn.cli import main
from hmgnn.config import Config

SHARED = Path(__file__).resolve().parents[2] / "shared" / "data"
SAMPLES = SHARED / "hm-samples"

TRANSACTIONS_SCHEMA = {"customer_index": pl.Int32, "article_index": pl.Int32, "t_dat": pl.Date,
                       "price": pl.Float32, "sales_channel_id": pl.Int8}
CUSTOMERS_SCHEMA = {"customer_index": pl.Int32, "customer_id": pl.String, "FN": pl.Int8, "Active": pl.Int8,
                    "club_member_status": pl.String, "fashion_news_frequency": pl.String, "age": pl.Int16,
                    "postal_code": pl.String, "known": pl.Boolean}
ARTICLES_SCHEMA = {
    "article_index": pl.Int32, "article_id": pl.Int64,
    **{c: (pl.Int32 if c in ingest._ARTICLE_CODES else pl.String) for c in ingest.KAGGLE_ARTICLE_COLUMNS[1:]},
    "known": pl.Boolean,
}


def cid(i: int) -> str:
    """A Kaggle-shaped customer id: 64 hex digits."""
    return f"{i:064x}"


CUSTOMERS_CSV = (
    "customer_id,FN,Active,club_member_status,fashion_news_frequency,age,postal_code\n"
    f"{cid(1)},1.0,1.0,ACTIVE,Regularly,49.0,p1\n"
    f"{cid(2)},,,ACTIVE,NONE,25.0,p2\n"
    f"{cid(3)},,,PRE-CREATE,None,,p3\n"
)
ARTICLES_CSV = (
    ",article_id,product_code,prod_name,product_type_no,index_code,detail_desc\n"  # leading pandas index column
    "0,108775015,108775,Strap top,253,A,\"Jersey top, narrow straps.\"\n"
    "1,108775044,108775,Strap top,253,A,Jersey top.\n"
    "2,110065001,110065,OP T-shirt,306,B,\n"
)
TRANSACTIONS_CSV = (
    "t_dat,customer_id,article_id,price,sales_channel_id\n"
    f"2018-09-20,{cid(2)},0108775015,0.0508,2\n"
    f"2018-09-20,{cid(1)},0110065001,0.0305,1\n"
    f"2018-09-20,{cid(2)},0108775044,0.0152,2\n"
    f"2018-09-21,{cid(3)},0108775015,0.0169,2\n"
    f"2018-09-19,{cid(1)},0108775044,0.0100,1\n"
)


def write_raw(folder: Path, transactions: str = TRANSACTIONS_CSV, customers: str = CUSTOMERS_CSV,
              articles: str = ARTICLES_CSV) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for name, text in (("transactions_train.csv", transactions), ("customers.csv", customers),
                       ("articles.csv", articles)):
        (folder / name).write_text(text, encoding="utf-8")
    return folder


def run_cli(capsys, *args: str) -> tuple[int, str]:
    """Run `hmgnn ...` in-process, return (exit code, stderr)."""
    try:
        main(list(args))
        code = 0
    except SystemExit as exc:
        code = exc.code or 0
    return code, capsys.readouterr().err


def read_tables(tables: Path) -> tuple[pl.DataFrame, pl.DataFrame, pl.DataFrame]:
    return tuple(pl.read_parquet(tables / f"{n}.parquet") for n in ("transactions", "customers", "articles"))


def check_contract(tables: Path) -> tuple[pl.DataFrame, pl.DataFrame, pl.DataFrame]:
    """The invariants of docs/CONTRACT.md that hold for any input."""
    tx, cu, ar = read_tables(tables)
    assert dict(tx.schema) == TRANSACTIONS_SCHEMA
    assert dict(cu.schema) == CUSTOMERS_SCHEMA
    assert dict(ar.schema) == ARTICLES_SCHEMA
    assert cu["customer_index"].to_list() == list(range(cu.height))
    assert ar["article_index"].to_list() == list(range(ar.height))
    assert cu["customer_id"].n_unique() == cu.height and ar["article_id"].n_unique() == ar.height
    assert tx.null_count().select(pl.exclude("sales_channel_id")).sum_horizontal().item() == 0
    assert tx["customer_index"].max() < cu.height and tx["article_index"].max() < ar.height
    key = tx["t_dat"].cast(pl.Int64) * (1 << 32) + tx["customer_index"].cast(pl.Int64)
    assert key.is_sorted()
    for table in (cu, ar):  # file rows first, then the unknown ones
        assert table["known"].to_list() == sorted(table["known"].to_list(), reverse=True)
    manifest = json.loads((tables / "manifest.json").read_text())
    assert manifest["rows"] == {"transactions": tx.height, "customers": cu.height, "articles": ar.height}
    if "dropped_transactions" not in manifest:  # with keep_unknown=false the unknown ids are counted, not added
        assert manifest["unknown"] == {"customers": int((~cu["known"]).sum()),
                                       "articles": int((~ar["known"]).sum())}
    return tx, cu, ar


def with_ids(tx: pl.DataFrame, cu: pl.DataFrame, ar: pl.DataFrame) -> pl.DataFrame:
    """Transactions with their ids joined back from the id maps."""
    return (tx.join(cu.select("customer_index", "customer_id"), on="customer_index")
              .join(ar.select("article_index", "article_id"), on="article_index"))


# ---------------------------------------------------------------------------------------------------------------
# The contract on a tiny hand-made data set


def test_small_data_set_follows_the_contract(tmp_path, capsys):
    write_raw(tmp_path / "raw")
    code, err = run_cli(capsys, "ingest", "-w", str(tmp_path))
    assert code == 0, err
    tx, cu, ar = check_contract(tmp_path / "tables")
    assert sorted(p.name for p in (tmp_path / "tables").iterdir()) == [
        "articles.parquet", "customers.parquet", "manifest.json", "transactions.parquet"]
    assert not list(tmp_path.glob(".tables*"))
    # customers.csv order; quirks normalised
    assert cu["customer_id"].to_list() == [cid(1), cid(2), cid(3)]
    assert cu["FN"].to_list() == [1, 0, 0] and cu["Active"].to_list() == [1, 0, 0]
    assert cu["age"].to_list() == [49, 25, None]
    assert cu["fashion_news_frequency"].to_list() == ["Regularly", "NONE", "NONE"]
    assert cu["known"].all()
    # articles.csv order, unpadded ids read as numbers, absent columns null, the unnamed index column ignored
    assert ar["article_id"].to_list() == [108775015, 108775044, 110065001]
    assert ar["product_code"].to_list() == [108775, 108775, 110065]
    assert ar["detail_desc"].to_list() == ["Jersey top, narrow straps.", "Jersey top.", None]
    assert ar["colour_group_code"].null_count() == 3 and ar["section_name"].null_count() == 3
    # sorted by date then customer_index, stable within; ids round-trip
    back = with_ids(tx, cu, ar)
    assert back["t_dat"].cast(pl.String).to_list() == ["2018-09-19", "2018-09-20", "2018-09-20", "2018-09-20",
                                                       "2018-09-21"]
    assert back["customer_id"].to_list() == [cid(1), cid(1), cid(2), cid(2), cid(3)]
    assert back["article_id"].to_list() == [108775044, 110065001, 108775015, 108775044, 108775015]
    assert back["price"].to_list() == pytest.approx([0.01, 0.0305, 0.0508, 0.0152, 0.0169], rel=1e-6)
    assert back["sales_channel_id"].to_list() == [1, 1, 2, 2, 2]


def test_input_in_date_and_customer_order_is_not_sorted_again(tmp_path, capsys):
    lines = TRANSACTIONS_CSV.splitlines(keepends=True)
    ordered = lines[0] + "".join(sorted(lines[1:], key=lambda line: (line[:10], line[11:75])))
    write_raw(tmp_path / "raw", transactions=ordered)
    code, err = run_cli(capsys, "ingest", "-w", str(tmp_path))
    assert code == 0 and "sorting" not in err
    tx, cu, ar = check_contract(tmp_path / "tables")
    assert with_ids(tx, cu, ar)["customer_id"].to_list() == [line[11:75] for line in ordered.splitlines()[1:]]


def test_second_run_is_skipped_and_force_redoes_it(tmp_path, capsys):
    write_raw(tmp_path / "raw")
    assert run_cli(capsys, "ingest", "-w", str(tmp_path))[0] == 0
    stamp = (tmp_path / "tables" / "manifest.json").read_text()
    code, err = run_cli(capsys, "ingest", "-w", str(tmp_path))
    assert code == 0 and "up to date" in err
    assert (tmp_path / "tables" / "manifest.json").read_text() == stamp
    (tmp_path / "raw" / "transactions_train.csv").write_text(TRANSACTIONS_CSV.replace("0.0508", "0.0509"))
    assert run_cli(capsys, "ingest", "-w", str(tmp_path))[0] == 0
    assert (tmp_path / "tables" / "manifest.json").read_text() != stamp


# ---------------------------------------------------------------------------------------------------------------
# Input layouts: csv, csv.zip (PyG's HM), parquet, the competition zip


def _zip(path: Path, members: dict[str, str | bytes]) -> None:
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as zf:
        for name, data in members.items():
            zf.writestr(name, data)


def _layout(kind: str, root: Path) -> Path:
    texts = {"transactions_train.csv": TRANSACTIONS_CSV, "customers.csv": CUSTOMERS_CSV, "articles.csv": ARTICLES_CSV}
    raw = root / "raw"
    raw.mkdir(parents=True)
    if kind == "csv":
        write_raw(raw)
    elif kind == "csv.zip":
        for name, text in texts.items():
            _zip(raw / f"{name}.zip", {name: text})
    elif kind == "parquet":
        for name, text in texts.items():
            (raw / "t.csv").write_text(text)
            pl.read_csv(raw / "t.csv", infer_schema=False).write_parquet(raw / name.replace(".csv", ".parquet"))
            (raw / "t.csv").unlink()
    elif kind in ("competition zip", "folder with competition zip"):
        members = {**texts, "sample_submission.csv": "customer_id,prediction\n",
                   "images/010/0108775015.jpg": b"\xff\xd8\xff\xe0" + bytes(2000)}
        target = raw / ingest.COMPETITION_ZIP
        _zip(target, members)
        return target if kind == "competition zip" else raw
    return raw


@pytest.mark.parametrize("kind", ["csv", "csv.zip", "parquet", "competition zip", "folder with competition zip"])
def test_every_input_layout_gives_the_same_tables(tmp_path, capsys, kind):
    raw = _layout(kind, tmp_path / kind.replace(" ", "_"))
    out = tmp_path / "tables"
    code, err = run_cli(capsys, "ingest", "-w", str(tmp_path), "--raw", str(raw))
    assert code == 0, err
    tx, cu, ar = check_contract(out)
    reference_root = tmp_path / "reference"
    write_raw(reference_root / "raw")
    assert run_cli(capsys, "ingest", "-w", str(reference_root))[0] == 0
    for got, want in zip((tx, cu, ar), read_tables(reference_root / "tables")):
        assert got.equals(want)
    assert not (out / "_extract").exists()


def test_parquet_with_typed_columns_and_no_sales_channel(tmp_path, capsys):
    raw = tmp_path / "raw"
    raw.mkdir()
    pl.DataFrame({"t_dat": ["2019-01-02", "2019-01-01"], "customer_id": [cid(1), cid(2)],
                  "article_id": [108775015, 108775044], "price": [0.05, 0.02]}).write_parquet(
        raw / "transactions_sample.parquet")
    pl.DataFrame({"customer_id": [cid(1), cid(2)], "FN": [1.0, None], "Active": [None, 1.0],
                  "age": [21, None]}).write_parquet(raw / "customers_sample.parquet")
    pl.DataFrame({"article_id": [108775015, 108775044], "product_code": [108775, 108775]}).write_parquet(
        raw / "articles_sample.parquet")
    code, err = run_cli(capsys, "ingest", "-w", str(tmp_path))
    assert code == 0, err
    tx, cu, ar = check_contract(tmp_path / "tables")
    assert tx["sales_channel_id"].null_count() == 2
    assert tx["customer_index"].to_list() == [1, 0]
    assert cu["FN"].to_list() == [1, 0] and cu["Active"].to_list() == [0, 1] and cu["age"].to_list() == [21, None]
    assert cu["postal_code"].null_count() == 2


# ---------------------------------------------------------------------------------------------------------------
# Unknown ids and file-name matching


UNKNOWN_TX = TRANSACTIONS_CSV + (
    f"2018-09-22,{cid(9)},0108775015,0.02,2\n"
    f"2018-09-22,{cid(1)},0999999001,0.03,2\n"
    f"2018-09-23,{cid(9)},0999999001,0.04,1\n"
    f"2018-09-23,{cid(8)},0108775044,0.04,1\n"
)


def test_unknown_ids_get_unknown_rows(tmp_path, capsys):
    write_raw(tmp_path / "raw", transactions=UNKNOWN_TX)
    code, err = run_cli(capsys, "ingest", "-w", str(tmp_path))
    assert code == 0, err
    assert "missing from the metadata files" in " ".join(err.split())
    tx, cu, ar = check_contract(tmp_path / "tables")
    assert tx.height == 9
    assert cu["customer_id"].to_list()[3:] == [cid(9), cid(8)]  # appended in order of first use
    assert cu["known"].to_list() == [True, True, True, False, False]
    assert cu.filter(~pl.col("known"))["FN"].to_list() == [0, 0]
    unknown = ar.filter(~pl.col("known"))
    assert unknown["article_id"].to_list() == [999999001] and unknown["product_code"].to_list() == [999999]
    assert unknown["prod_name"].to_list() == [None]
    back = with_ids(tx, cu, ar).filter(pl.col("t_dat") >= pl.date(2018, 9, 22))
    assert back.select("customer_id", "article_id").rows() == [
        (cid(1), 999999001), (cid(9), 108775015), (cid(9), 999999001), (cid(8), 108775044)]
    manifest = json.loads((tmp_path / "tables" / "manifest.json").read_text())
    assert manifest["unknown"] == {"customers": 2, "articles": 1}


def test_keep_unknown_false_drops_those_transactions(tmp_path, capsys):
    write_raw(tmp_path / "raw", transactions=UNKNOWN_TX)
    code, err = run_cli(capsys, "ingest", "-w", str(tmp_path), "--set", "ingest.keep_unknown=false")
    assert code == 0, err
    tx, cu, ar = check_contract(tmp_path / "tables")
    assert tx.height == 5 and cu["known"].all() and ar["known"].all()
    assert json.loads((tmp_path / "tables" / "manifest.json").read_text())["dropped_transactions"] == 4


@pytest.mark.parametrize("ids", [[cid(i) for i in range(50)], [f"user {i}" for i in range(50)]])
def test_customer_index_by_hash_equals_the_string_join(ids):
    customers = pl.DataFrame({"customer_id": ids}).with_row_index("customer_index").cast({"customer_index": pl.Int32})
    wanted = ids[::3] + [None, "not a customer", ids[10].upper(), ids[1] + " "]
    lf = pl.LazyFrame({"customer_id": wanted}, schema={"customer_id": pl.String})
    by_hash = ingest._with_customer_index(lf, customers).collect()["customer_index"].to_list()
    by_string = ingest._with_customer_index(lf, customers, by_hash=False).collect()["customer_index"].to_list()
    assert by_hash == by_string == list(range(0, 50, 3)) + [None] * 4


def test_files_are_found_by_the_words_in_their_names(tmp_path, capsys):
    raw = tmp_path / "raw"
    raw.mkdir()
    (raw / "kaggle_hm_transactions_sample.csv").write_text(TRANSACTIONS_CSV)
    (raw / "kaggle_hm_customers_sample.csv").write_text(CUSTOMERS_CSV)
    (raw / "articles_train_sample.csv").write_text(ARTICLES_CSV)
    # fitscope's neighbours: files about articles of transactions, or transactions of top articles
    (raw / "kaggle_hm_transaction_articles_sample.csv").write_text(ARTICLES_CSV)
    (raw / "kaggle_hm_top_article_transactions.csv").write_text("article_id,transactions\n0108775015,5\n")
    (raw / "notes.txt").write_text("not data")
    found = ingest.find_sources(raw)
    assert {k: s.path.name for k, s in found.items()} == {
        "transactions": "kaggle_hm_transactions_sample.csv", "customers": "kaggle_hm_customers_sample.csv",
        "articles": "articles_train_sample.csv"}
    assert run_cli(capsys, "ingest", "-w", str(tmp_path))[0] == 0
    check_contract(tmp_path / "tables")


# ---------------------------------------------------------------------------------------------------------------
# Bad input: one line, exit code 1, no output folder


def _binary(path: Path) -> None:
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + bytes(range(256)) * 4)


def _latin1_late(path: Path) -> None:
    # the bad byte lies beyond the first 64 KiB that are sniffed: polars finds it, ingest says where
    rows = [f"2018-09-20,{cid(1)},0108775015,0.0508,2\n"] * 1200
    rows[1000] = f"2018-09-20,{cid(1)},0108775015,0.0508,2\n".replace("2\n", "2 caf\xe9\n")
    path.write_bytes(b"t_dat,customer_id,article_id,price,sales_channel_id\n" + "".join(rows).encode("latin-1"))


BAD_INPUTS = {
    # case: (file to change, new content or writer, words the message must contain)
    "missing file": ("articles.csv", None, ["no articles file", "articles.csv"]),
    "missing column": ("transactions_train.csv", TRANSACTIONS_CSV.replace(",price", ""),
                       ["transactions_train.csv", "column price", "missing"]),
    "renamed column": ("transactions_train.csv", TRANSACTIONS_CSV.replace("t_dat", "date"),
                       ["transactions_train.csv", "column t_dat", "rename"]),
    "bad date": ("transactions_train.csv", TRANSACTIONS_CSV.replace("2018-09-21", "21/09/2018"),
                 ["transactions_train.csv", "column t_dat", "row 4", "'21/09/2018'", "YYYY-MM-DD"]),
    "bad price": ("transactions_train.csv", TRANSACTIONS_CSV.replace("0.0152", "abc"),
                  ["transactions_train.csv", "column price", "row 3", "'abc'"]),
    "infinite price": ("transactions_train.csv", TRANSACTIONS_CSV.replace("0.0152", "inf"),
                       ["column price", "row 3", "'inf'"]),
    "bad sales channel": ("transactions_train.csv", TRANSACTIONS_CSV.replace("0.0169,2", "0.0169,online"),
                          ["column sales_channel_id", "row 4", "'online'"]),
    "empty customer id": ("transactions_train.csv", TRANSACTIONS_CSV.replace(f",{cid(3)},", ",,"),
                          ["transactions_train.csv", "column customer_id", "row 4", "empty"]),
    "empty article id": ("transactions_train.csv", TRANSACTIONS_CSV.replace("0110065001", ""),
                         ["column article_id", "row 2", "empty"]),
    "bad article id": ("transactions_train.csv", TRANSACTIONS_CSV.replace("0110065001", "A110065001"),
                       ["column article_id", "row 2", "'A110065001'"]),
    "empty id in customers": ("customers.csv", CUSTOMERS_CSV.replace(cid(2), ""),
                              ["customers.csv", "column customer_id", "row 2", "empty"]),
    "duplicate customer": ("customers.csv", CUSTOMERS_CSV + f"{cid(1)},,,ACTIVE,NONE,30,p9\n",
                           ["customers.csv", "column customer_id", "row 4", "row 1"]),
    "bad age": ("customers.csv", CUSTOMERS_CSV.replace("25.0", "twenty"),
                ["customers.csv", "column age", "row 2", "'twenty'"]),
    "bad article code": ("articles.csv", ARTICLES_CSV.replace(",253,A,Jersey", ",x25,A,Jersey"),
                         ["articles.csv", "column product_type_no", "row 2", "'x25'"]),
    "empty file": ("customers.csv", "", ["customers.csv", "is empty"]),
    "header only": ("transactions_train.csv", TRANSACTIONS_CSV.splitlines()[0] + "\n",
                    ["transactions_train.csv", "no rows"]),
    "binary file": ("customers.csv", _binary, ["customers.csv", "binary"]),
    "not utf-8": ("articles.csv", ARTICLES_CSV.replace("OP T-shirt", "Caf\xe9 T-shirt").encode("latin-1"),
                  ["articles.csv", "column prod_name", "row 3", "0xe9", "UTF-8"]),
    "not utf-8 after 64 KiB": ("transactions_train.csv", _latin1_late, ["transactions_train.csv", "row 1001",
                                                                          "column sales_channel_id", "UTF-8"]),
    "extra field": ("customers.csv", CUSTOMERS_CSV.replace("p2\n", "p2,extra\n"),
                    ["customers.csv", "row 2", "8 fields where the header names 7"]),
    "extra field in transactions": ("transactions_train.csv", TRANSACTIONS_CSV.replace("0.0169,2", "0,0169,2"),
                                    ["transactions_train.csv", "row 4", "6 fields"]),
    "semicolons": ("customers.csv", CUSTOMERS_CSV.replace(",", ";"), ["customers.csv", "column customer_id",
                                                                       "comma-separated"]),
}


@pytest.mark.parametrize("case", list(BAD_INPUTS))
def test_bad_input_is_one_line_and_leaves_no_output(tmp_path, capsys, case):
    name, content, words = BAD_INPUTS[case]
    raw = write_raw(tmp_path / "raw")
    target = raw / name
    if content is None:
        target.unlink()
    elif callable(content):
        content(target)
    elif isinstance(content, bytes):
        target.write_bytes(content)
    else:
        target.write_text(content, encoding="utf-8")
    code, err = run_cli(capsys, "ingest", "-w", str(tmp_path))
    assert code == 1
    assert "Traceback" not in err
    errors = [line for line in err.splitlines() if line.startswith("error:")]
    assert len(errors) == 1, err
    for word in words:
        assert word in errors[0], (word, errors[0])
    assert not (tmp_path / "tables").exists()
    assert not list(tmp_path.glob(".tables*"))


def test_several_or_no_candidates_are_named(tmp_path, capsys):
    raw = write_raw(tmp_path / "raw")
    (raw / "transactions_train.csv").rename(raw / "transactions_2019.csv")
    (raw / "transactions_2020.csv").write_text(TRANSACTIONS_CSV)
    code, err = run_cli(capsys, "ingest", "-w", str(tmp_path))
    assert code == 1 and "several transactions files" in err and "transactions_2019.csv" in err
    code, err = run_cli(capsys, "ingest", "-w", str(tmp_path), "--raw", str(tmp_path / "nowhere"))
    assert code == 1 and "does not exist" in err
    assert not (tmp_path / "tables").exists()


def test_a_broken_zip_is_an_input_error(tmp_path, capsys):
    raw = tmp_path / "raw"
    raw.mkdir()
    (raw / ingest.COMPETITION_ZIP).write_bytes(b"PK\x03\x04 truncated")
    code, err = run_cli(capsys, "ingest", "-w", str(tmp_path), "--raw", str(raw / ingest.COMPETITION_ZIP))
    assert code == 1 and "not a readable zip" in err


def test_the_installed_command_exits_1_with_one_line(tmp_path):
    raw = write_raw(tmp_path / "raw", transactions=TRANSACTIONS_CSV.replace("2018-09-21", "2018-02-30"))
    proc = subprocess.run([sys.executable, "-m", "hmgnn.cli", "ingest", "-w", str(tmp_path), "--raw", str(raw)],
                          capture_output=True, text=True, env={**os.environ, "COLUMNS": "60"})
    assert proc.returncode == 1
    assert "Traceback" not in proc.stderr
    line = [x for x in proc.stderr.splitlines() if x.startswith("error:")]
    assert len(line) == 1 and "row 4" in line[0] and "'2018-02-30'" in line[0]
    assert not (tmp_path / "tables").exists()


# ---------------------------------------------------------------------------------------------------------------
# Real samples (../shared/data): row counts, dtypes, indices, ids round-trip


def _input_frame(path: Path) -> pl.DataFrame:
    if path.suffix == ".parquet":
        return pl.read_parquet(path)
    return pl.read_csv(path, infer_schema=False)


def _link(folder: Path, files: dict[str, Path]) -> Path:
    folder.mkdir(parents=True)
    for name, src in files.items():
        (folder / name).symlink_to(src)
    return folder


def _real_folders() -> dict[str, dict[str, Path] | Path]:
    fit = SAMPLES / "fitscope"
    return {
        "nader": SAMPLES / "nader",
        "ragrec": SAMPLES / "ragrec",
        "fitscope": SAMPLES / "fitscope",  # word matching must pick the three samples out of seven files
        # hungle45 has metadata only: pair it with nader's transactions (covers part of their ids)
        "hungle45+nader": {"transactions_train.csv": SAMPLES / "nader" / "transactions_train.csv",
                           "customers.csv": SAMPLES / "hungle45-gen2" / "customers_sample.csv",
                           "articles.csv": SAMPLES / "hungle45-gen2" / "articles_train_sample.csv"},
        "fitscope-transaction-articles": {
            "transactions.csv": fit / "kaggle_hm_personalized_transactions_sample.csv",
            "customers.csv": fit / "kaggle_hm_personalized_customers_sample.csv",
            "articles.csv": fit / "kaggle_hm_personalized_transaction_articles_sample.csv"},
        "movielens": SHARED / "movielens-small-as-hm",  # 1996..2018, with gaps of weeks: no date is cut off
        "onlineretail": SHARED / "onlineretail2010-as-hm",  # parquet, real purchase logs of 2010
    }


@pytest.mark.parametrize("name", list(_real_folders()))
def test_real_samples(tmp_path, name):
    if not SHARED.is_dir():
        pytest.skip(f"real data samples not found at {SHARED}")
    spec = _real_folders()[name]
    raw = _link(tmp_path / "raw", spec) if isinstance(spec, dict) else spec
    cfg = Config(workdir=str(tmp_path))
    sources = ingest.find_sources(raw)
    out = ingest.run(cfg, inp=raw)
    tx, cu, ar = check_contract(out)

    raw_tx = _input_frame(sources["transactions"].path)
    raw_cu = _input_frame(sources["customers"].path)
    raw_ar = _input_frame(sources["articles"].path)
    assert tx.height == raw_tx.height
    # metadata rows keep file order, then the unknown ids
    n_cu, n_ar = raw_cu.height, raw_ar.height
    assert cu["customer_id"].head(n_cu).to_list() == raw_cu["customer_id"].cast(pl.String).to_list()
    assert ar["article_id"].head(n_ar).to_list() == raw_ar["article_id"].cast(pl.Int64).to_list()
    assert cu["known"].sum() == n_cu and ar["known"].sum() == n_ar
    # every transaction comes back with its ids, date and price
    want = raw_tx.select(pl.col("customer_id").cast(pl.String), pl.col("article_id").cast(pl.Int64),
                         pl.col("t_dat").cast(pl.String), pl.col("price").cast(pl.Float64).cast(pl.Float32))
    got = with_ids(tx, cu, ar).select("customer_id", "article_id", pl.col("t_dat").cast(pl.String), "price")
    order = ["t_dat", "customer_id", "article_id", "price"]
    assert got.sort(order).equals(want.sort(order))
    if "sales_channel_id" in raw_tx.columns:
        assert tx["sales_channel_id"].null_count() == 0
    else:
        assert tx["sales_channel_id"].null_count() == tx.height
    unknown = json.loads((out / "manifest.json").read_text())["unknown"]
    tx_ids, cu_ids = raw_tx["customer_id"].cast(pl.String).unique(), raw_cu["customer_id"].cast(pl.String)
    tx_articles, ar_ids = raw_tx["article_id"].cast(pl.Int64).unique(), raw_ar["article_id"].cast(pl.Int64)
    assert unknown == {"customers": (~tx_ids.is_in(cu_ids.implode())).sum(),
                       "articles": (~tx_articles.is_in(ar_ids.implode())).sum()}

"""`hmgnn ingest`: the three Kaggle files (csv, csv.zip, parquet or the competition zip) to typed parquet tables.

Customer and article ids become contiguous int32 indices; the id maps live in tables/customers and tables/articles.
"""

from __future__ import annotations

import contextlib
import csv
import datetime as dt
import difflib
import os
import shutil
import time
import zipfile
from dataclasses import dataclass, field
from pathlib import Path

import polars as pl

from hmgnn import artifacts
from hmgnn.config import Config
from hmgnn.console import console, info, progress
from hmgnn.errors import InputError

COMPETITION_ZIP = "h-and-m-personalized-fashion-recommendations.zip"
KAGGLE_NAMES = {
    "transactions": artifacts.TRANSACTIONS_CSV,
    "customers": artifacts.CUSTOMERS_CSV,
    "articles": artifacts.ARTICLES_CSV,
}
# A file named like another kind too (fitscope's top_article_transactions.csv) is not a first choice.
_KIND_STEMS = {"transactions": "transaction", "customers": "customer", "articles": "article"}
_SUFFIXES = (".csv", ".parquet", ".csv.zip")

KAGGLE_TRANSACTION_COLUMNS = ("t_dat", "customer_id", "article_id", "price")
KAGGLE_CUSTOMER_COLUMNS = ("customer_id", "FN", "Active", "club_member_status", "fashion_news_frequency", "age",
                    "postal_code")
KAGGLE_ARTICLE_COLUMNS = (
    "article_id", "product_code", "prod_name", "product_type_no", "product_type_name", "product_group_name",
    "graphical_appearance_no", "graphical_appearance_name", "colour_group_code", "colour_group_name",
    "perceived_colour_value_id", "perceived_colour_value_name", "perceived_colour_master_id",
    "perceived_colour_master_name", "department_no", "department_name", "index_code", "index_name",
    "index_group_no", "index_group_name", "section_no", "section_name", "garment_group_no", "garment_group_name",
    "detail_desc",
)
_ARTICLE_CODES = {c for c in KAGGLE_ARTICLE_COLUMNS[1:] if c.endswith(("_no", "_code", "_id")) and c != "index_code"}
_SNIFF = 64 << 10
_ZSTD_LEVEL = 1  # on these tables as small as the default level 3, at half the CPU
MAX_AGE = 120
"""Ages outside 0..MAX_AGE years are typos."""
ISOLATED_DAYS = 365
"""A date at either end of the purchases more than this many days from every other date is cut off from the data: a
typo (a lone 2030 or 1900), where real logs from any year (1997, 2010) run day after day."""
CUSTOMER_ID = r"^[0-9a-f]{64}$"
"""Kaggle's customer ids: 64 lower-case hexadecimal characters (what `recommend` and `serve` accept)."""
_LENIENT = "or pass --lenient to leave such rows out"


@dataclass
class Problems:
    """The impossible values `ingest` found, one entry per kind (a file's column and what is wrong): the line that
    says where, and how many rows. Without --lenient they are one error, a line per kind; with it, the rows are left
    out (ages set to missing) and counted per kind."""

    lenient: bool
    lines: list[str] = field(default_factory=list)
    counts: dict[str, int] = field(default_factory=dict)

    def add(self, kind: str, count: int, line: str) -> None:
        if count:
            self.lines.append(line)
            self.counts[kind] = self.counts.get(kind, 0) + count

    def settle(self) -> None:
        """Raise the lines as one error, or (lenient) say what was left out."""
        if not self.lines:
            return
        if not self.lenient:
            raise InputError("\n".join(self.lines))
        info("ingest --lenient: " + "; ".join(f"{kind}: {n:,}" for kind, n in self.counts.items()))


def _at(src: Source, column: str | None, row: int, count: int, value: object) -> str:
    """Where a problem is: file, column, first row (and how many more), and the value there."""
    more = f" (and {count - 1:,} more rows)" if count > 1 else ""
    shown = "empty" if value is None or value == "" else repr(value)
    return f"{src.name}{f', column {column}' if column else ''}, row {row}{more}: {shown}"


@dataclass
class Source:
    """One input table: a file on disk, or a member of a zip archive that is copied out before reading."""

    kind: str
    path: Path
    member: str | None = None
    label: str | None = None
    """What messages call it (the archive and member of an extracted file)."""

    @property
    def name(self) -> str:
        return self.label or (f"{self.path.name}:{self.member}" if self.member else self.path.name)

    @property
    def is_parquet(self) -> bool:
        return (self.member or self.path.name).lower().endswith(".parquet")


# ---------------------------------------------------------------------------------------------------------------
# Finding the three files


def _pick(kind: str, names: list[str], where: str) -> str | None:
    """The Kaggle name if present, else the one name that contains the kind's word (None when there is none)."""
    lower = {n.lower(): n for n in names}
    for suffix in _SUFFIXES:
        exact = KAGGLE_NAMES[kind].removesuffix(".csv") + suffix
        if exact in lower:
            return lower[exact]
    candidates = [n for n in names if kind in n.lower()]
    if len(candidates) > 1:
        others = [s for k, s in _KIND_STEMS.items() if k != kind]
        candidates = [n for n in candidates if not any(s in n.lower() for s in others)] or candidates
    if len(candidates) > 1:
        raise InputError(f"{where} has several {kind} files ({', '.join(sorted(candidates))}); keep one, or rename "
                         f"the right one to {KAGGLE_NAMES[kind]}")
    return candidates[0] if candidates else None


def _hidden(name: str) -> bool:
    return name.startswith(".")  # editor backups and macOS "._articles.csv" shadow files are not data


def _zip_members(archive: Path) -> list[str]:
    try:
        with zipfile.ZipFile(archive) as zf:
            return [m for m in zf.namelist() if m.lower().endswith((".csv", ".parquet"))
                    and "/images/" not in f"/{m}" and not _hidden(Path(m).name) and not m.startswith("__MACOSX/")]
    except (zipfile.BadZipFile, OSError) as exc:
        raise InputError(f"{archive.name} is not a readable zip archive ({exc}); download it again") from None


def _from_zip(archive: Path, kinds: tuple[str, ...]) -> dict[str, Source]:
    members = _zip_members(archive)
    by_base = {Path(m).name: m for m in members}
    found = {}
    for kind in kinds:
        base = _pick(kind, list(by_base), archive.name)
        if base is not None:
            found[kind] = Source(kind, archive, by_base[base])
    return found


def find_sources(inp: Path, required: tuple[str, ...] = tuple(KAGGLE_NAMES)) -> dict[str, Source]:
    """The transactions, customers and articles inputs in a raw folder or a competition zip; those of `required`
    must be there (`hmgnn update` needs the transactions only)."""
    kinds = tuple(KAGGLE_NAMES)
    if inp.is_file() and inp.suffix.lower() == ".zip" and not inp.name.lower().endswith(".csv.zip"):
        found, where = _from_zip(inp, kinds), inp.name
    elif inp.is_dir():
        files = [p.name for p in inp.iterdir()
                 if p.is_file() and p.name.lower().endswith(_SUFFIXES) and not _hidden(p.name)]
        found, where = {}, str(inp)
        for kind in kinds:
            name = _pick(kind, files, str(inp))
            if name is not None:
                found[kind] = Source(kind, inp / name)
        missing = tuple(k for k in kinds if k not in found)
        if missing and (inp / COMPETITION_ZIP).is_file():
            found.update(_from_zip(inp / COMPETITION_ZIP, missing))
    elif inp.exists():
        raise InputError(f"--raw {inp} is neither a folder nor a zip; pass the folder with the Kaggle files or "
                         f"{COMPETITION_ZIP}")
    else:
        raise InputError(f"{inp} does not exist; run `hmgnn synth` or pass --raw with the folder that holds "
                         "transactions_train.csv, customers.csv and articles.csv (or the competition zip)")
    for kind in required:
        if kind not in found:
            stem = KAGGLE_NAMES[kind].removesuffix(".csv")
            needed = ("all three Kaggle files are needed" if len(required) == len(kinds)
                      else f"the {' and '.join(required)} {'file is' if len(required) == 1 else 'files are'} needed")
            raise InputError(f"{where} has no {kind} file: expected {stem}.csv (or .csv.zip, .parquet, or one file "
                             f"whose name contains '{kind}'); {needed}")
    return found


def _materialize(src: Source, scratch: Path) -> Source:
    """A source that polars can read: zip members are stream-copied to `scratch` (the rest of the zip is skipped)."""
    archive, member = src.path, src.member
    if member is None and src.path.name.lower().endswith(".csv.zip"):
        members = _zip_members(src.path)
        if len(members) != 1:
            raise InputError(f"{src.name} should hold one .csv file, found {len(members)}; unzip it and pass the csv")
        member = members[0]
    if member is None:
        return src
    scratch.mkdir(exist_ok=True)
    target = scratch / f"{src.kind}{'.parquet' if member.lower().endswith('.parquet') else '.csv'}"
    info(f"ingest: extracting {Path(member).name} from {archive.name}")
    try:
        with zipfile.ZipFile(archive) as zf, zf.open(member) as fin, target.open("wb") as fout:
            shutil.copyfileobj(fin, fout, 1 << 22)
    except (zipfile.BadZipFile, OSError, EOFError) as exc:  # zlib errors are OSError subclasses or zlib.error
        raise InputError(f"{archive.name}: could not extract {member} ({exc}); download the file again") from None
    return Source(src.kind, target, label=f"{archive.name}:{member}")


# ---------------------------------------------------------------------------------------------------------------
# Cheap checks before reading: empty, binary, not UTF-8, header columns


def _first_bad_utf8(path: Path, limit: int | None = None) -> tuple[int, int] | None:
    """(byte offset, newlines before it) of the first byte that is not UTF-8 text, or None."""
    newlines, carry, read = 0, b"", 0
    with path.open("rb") as f:
        while block := f.read(min(1 << 23, limit - read) if limit else 1 << 23):
            start = read - len(carry)  # file offset of data[0]
            read += len(block)
            data = carry + block
            try:
                data.decode("utf-8")
                good = len(data)
            except UnicodeDecodeError as exc:
                # a character cut by the block boundary is fine; anything else is bad
                if exc.reason != "unexpected end of data" or exc.start < len(data) - 3:
                    return start + exc.start, newlines + data.count(b"\n", 0, exc.start)
                good = exc.start
            newlines += data.count(b"\n", 0, good)
            carry = data[good:]
            if limit and read >= limit:
                return None  # the tail may be a cut character: polars will tell when it is not
    if carry:
        return read - len(carry), newlines
    return None


def _utf8_error(src: Source, where: tuple[int, int]) -> InputError:
    """Name the row and (from the commas before the bad byte) the column of a byte that is not UTF-8."""
    offset, row = where
    with src.path.open("rb") as f:
        header = f.readline().decode("utf-8", errors="replace").removeprefix("\ufeff")
        lo = max(0, offset - _SNIFF)
        f.seek(lo)
        before, bad = f.read(offset - lo), f.read(1)
    line = before[before.rfind(b"\n") + 1:].decode("utf-8", errors="replace")
    names = next(csv.reader([header.strip()]), [])
    field = len(next(csv.reader([line]), [""])) - 1 if line else 0
    column = f", column {names[field]}" if row > 0 and field < len(names) else ""
    at = "the header" if row == 0 else f"row {row}"
    return InputError(f"{src.name}{column}, {at}: byte 0x{bad.hex()} is not UTF-8 text; "
                      "re-save the file as UTF-8 (e.g. iconv -f latin1 -t utf-8)")


def _columns(src: Source) -> list[str]:
    """The column names, after checking the file is a non-empty UTF-8 CSV (or a parquet file) with data rows."""
    size = src.path.stat().st_size
    if size == 0:
        raise InputError(f"{src.name} is empty; it needs a header and at least one row (re-download or re-export it)")
    with src.path.open("rb") as f:
        head = f.read(_SNIFF)
    if src.is_parquet:
        if not head.startswith(b"PAR1"):
            raise InputError(f"{src.name} is not a parquet file; give it a .csv name if it is CSV text")
        try:
            schema = pl.read_parquet_schema(src.path)
            rows = pl.scan_parquet(src.path).select(pl.len()).collect().item()
        except (pl.exceptions.PolarsError, OSError) as exc:
            raise InputError(f"{src.name} is not a readable parquet file ({_first_line(exc)}); "
                             "export it again") from None
        if rows == 0:
            raise InputError(f"{src.name} has no rows; export it again with its data")
        return list(schema)
    if head.startswith(b"PK\x03\x04"):
        raise InputError(f"{src.name} is a zip archive, not CSV text; unzip it or name it {src.name}.zip")
    if head.startswith(b"PAR1"):
        raise InputError(f"{src.name} is a parquet file, not CSV text; rename it to end in .parquet")
    if b"\x00" in head:
        raise InputError(f"{src.name} is a binary file, not CSV text; pass the Kaggle CSV (or .csv.zip / .parquet)")
    bad = _first_bad_utf8(src.path, limit=_SNIFF)
    if bad is not None:
        raise _utf8_error(src, bad)
    text = head.decode("utf-8", errors="ignore").removeprefix("\ufeff")
    lines = text.splitlines()
    if not lines or not lines[0].strip():
        raise InputError(f"{src.name} has no header line; the first line must name the columns")
    if not any(line.strip() for line in lines[1:]) and size <= _SNIFF:
        raise InputError(f"{src.name} has a header but no rows; it needs at least one row of data")
    return next(csv.reader([lines[0]]))


def _require(src: Source, found: list[str], required: tuple[str, ...]) -> None:
    missing = [c for c in required if c not in found]
    if not missing:
        return
    col = missing[0]
    hint = ""
    if len(found) == 1 and any(sep in found[0] for sep in ";\t|"):
        hint = "; the file does not look comma-separated: save it with ',' between columns"
    else:
        close = difflib.get_close_matches(col, [c for c in found if c not in required], n=1, cutoff=0.5)
        hint = f"; rename '{close[0]}' to '{col}'" if close else f"; rename the column that holds it to '{col}'"
    shown = ", ".join(repr(c) for c in found[:12]) + (", ..." if len(found) > 12 else "")
    raise InputError(f"{src.name}, column {col}: missing (columns found: {shown}){hint}")


def _first_line(exc: BaseException) -> str:
    return (str(exc).strip().splitlines() or [type(exc).__name__])[0]


def _first_long_row(path: Path) -> tuple[int, int, int] | None:
    """(data row, fields, header fields) of the first row with more fields than the header, or None (slow path)."""
    with path.open(newline="", encoding="utf-8-sig", errors="replace") as f:
        reader = csv.reader(f)
        width = len(next(reader, []))
        for row, fields in enumerate(reader, start=1):
            if len(fields) > width:
                return row, len(fields), width
    return None


def _read_error(src: Source, exc: BaseException) -> InputError:
    """Turn a polars read failure into a one-line InputError, locating the row when the cause is known."""
    message = str(exc).lower()
    if "utf-8" in message and not src.is_parquet:
        where = _first_bad_utf8(src.path)
        if where is not None:
            return _utf8_error(src, where)
    if "more fields" in message and not src.is_parquet:
        long_row = _first_long_row(src.path)
        if long_row is not None:
            row, n, width = long_row
            return InputError(f"{src.name}, row {row}: {n} fields where the header names {width}; quote values "
                              "that contain commas, or remove the extra fields")
    return InputError(f"{src.name} could not be read ({_first_line(exc)}); check the file is the Kaggle CSV or "
                      "parquet, comma-separated, one row per line")


# ---------------------------------------------------------------------------------------------------------------
# Customers and articles: small, read eagerly as text and parsed column by column


def _read_text_table(src: Source, columns: list[str]) -> pl.DataFrame:
    """The named columns as strings, plus `_row` (1-based data row number)."""
    try:
        if src.is_parquet:
            df = pl.read_parquet(src.path, columns=columns).cast(pl.String)
        else:
            df = pl.read_csv(src.path, columns=columns, infer_schema=False, glob=False)
    except (pl.exceptions.PolarsError, OSError) as exc:
        raise _read_error(src, exc) from None
    if df.height == 0:
        raise InputError(f"{src.name} has a header but no rows; it needs at least one row of data")
    return df.with_row_index("_row", offset=1)


def _bad(src: Source, df: pl.DataFrame, column: str, mask: pl.Series, problem: str, fix: str) -> None:
    """Raise naming the first row where `mask` is true."""
    n = int(mask.sum())
    if n:
        i = int(mask.arg_true()[0])
        value = df[column][i]
        more = f" (and {n - 1:,} more rows)" if n > 1 else ""
        shown = "empty" if value is None or value == "" else repr(value)
        raise InputError(f"{src.name}, column {column}, row {df['_row'][i]}{more}: {shown} {problem}; {fix}")


def _ids(src: Source, df: pl.DataFrame, column: str, numeric: bool) -> pl.Series:
    raw = df[column]
    _bad(src, df, column, raw.is_null(), "id", f"every row needs a {column}")
    ids = _whole(src, df, column, pl.Int64, "article ids are digits, e.g. 0108775015") if numeric else raw
    dup = ids.is_duplicated()
    if dup.any():
        first = int(dup.arg_true()[0])
        rows = df["_row"].filter(ids == ids[first]).head(2).to_list()
        raise InputError(f"{src.name}, column {column}, row {rows[1]}: {raw[first]!r} already appeared in row "
                         f"{rows[0]}; keep one row per {column.removesuffix('_id')}")
    return ids


def _whole(src: Source, df: pl.DataFrame, column: str, dtype: pl.DataType, fix: str) -> pl.Series:
    """A column of whole numbers (`21`, `21.0`); empty stays null, anything else is an error."""
    raw = df[column]
    number = raw.str.strip_chars().cast(pl.Float64, strict=False)
    value = number.cast(dtype, strict=False)
    bad = raw.is_not_null() & (value.is_null() | (number != number.floor()).fill_null(True))
    _bad(src, df, column, bad, "is not a whole number", fix)
    return value


def _short_rows(src: Source, candidates: pl.Series, width: int) -> list[tuple[int, int]]:
    """(data row, fields) of each candidate row (one whose last column is empty) with fewer fields than the header's
    `width`: a row cut short, not an empty last value. Read with Python's csv, which follows quoted line breaks; only
    run where some last value is empty."""
    if src.is_parquet or candidates.is_empty():
        return []
    wanted = set(candidates.to_list())
    short = []
    with src.path.open(newline="", encoding="utf-8-sig", errors="replace") as f:
        reader = csv.reader(f)
        next(reader, None)
        for row, fields in enumerate(reader, start=1):
            if row in wanted and len(fields) < width:
                short.append((row, len(fields)))
    return short


def _report_short_rows(src: Source, candidates: pl.Series, width: int, problems: Problems) -> list[int]:
    """Record the rows among `candidates` (row numbers whose last field is empty) that hold fewer than `width`
    fields, as one problem; returns their row numbers, to leave out."""
    short = _short_rows(src, candidates, width)
    if short:
        row, n = short[0]
        more = f" (and {len(short) - 1:,} more rows)" if len(short) > 1 else ""
        problems.add(f"rows cut short in {src.name}", len(short),
                     f"{src.name}, row {row}{more}: {n} fields where the header names {width} (a row cut short); "
                     f"complete it, {_LENIENT}")
    return [r for r, _ in short]


def _check_short_rows(src: Source, df: pl.DataFrame, found: list[str], problems: Problems) -> pl.Series:
    """Record the rows cut short (fewer fields than the header); returns the mask of them, to leave out."""
    last = found[-1]
    candidates = df["_row"].filter(df[last].is_null()) if last in df.columns else pl.Series([], dtype=pl.UInt32)
    return df["_row"].is_in(_report_short_rows(src, candidates, len(found), problems))


def _check_customer_ids(src: Source, df: pl.DataFrame, column: str, problems: Problems,
                        mask: pl.Series | None = None) -> pl.Series:
    """Record the customer ids that are not Kaggle's 64 lower-case hex characters; returns their mask."""
    bad = ~df[column].str.contains(CUSTOMER_ID).fill_null(True)
    if mask is not None:
        bad = bad & mask
    n = int(bad.sum())
    if n:
        i = int(bad.arg_true()[0])
        problems.add(f"malformed customer ids in {src.name}", n,
                     f"{_at(src, column, df['_row'][i], n, df[column][i])} is not a customer id: customer ids are 64 "
                     f"lower-case hexadecimal characters, as in Kaggle's customers.csv; fix it, {_LENIENT}")
    return bad


def read_customers(src: Source, problems: Problems | None = None) -> pl.DataFrame:
    """customers.csv in the contract's schema, file order, known=true; malformed ids, ages outside 0..MAX_AGE and
    rows cut short go to `problems` (lenient: those rows are left out, those ages missing)."""
    problems = problems if problems is not None else Problems(lenient=False)
    found = _columns(src)
    _require(src, found, ("customer_id",))
    df = _read_text_table(src, list(dict.fromkeys([*(c for c in KAGGLE_CUSTOMER_COLUMNS if c in found), found[-1]])))
    _ids(src, df, "customer_id", numeric=False)
    drop = _check_short_rows(src, df, found, problems) | _check_customer_ids(src, df, "customer_id", problems)
    if problems.lenient and drop.any():
        df = df.filter(~drop)
    ids = df["customer_id"]

    def flag(col: str) -> pl.Series:  # FN and Active are 1.0 or empty in Kaggle
        if col not in df.columns:
            return pl.Series(col, [0] * df.height, pl.Int8)
        return _whole(src, df, col, pl.Int8, "write 1, 1.0, 0 or leave it empty").fill_null(0).alias(col)

    def text(col: str) -> pl.Series:
        return df[col] if col in df.columns else pl.Series(col, [None] * df.height, pl.String)

    age = pl.Series("age", [None] * df.height, pl.Int16)
    if "age" in df.columns:
        years = _whole(src, df, "age", pl.Int64, "write the age in years, e.g. 21 or 21.0, or leave it empty")
        outside = ~years.is_between(0, MAX_AGE).fill_null(True)
        n = int(outside.sum())
        if n:
            i = int(outside.arg_true()[0])
            problems.add(f"ages outside 0..{MAX_AGE} set to missing", n,
                         f"{_at(src, 'age', df['_row'][i], n, df['age'][i])} is outside 0..{MAX_AGE} years; write "
                         f"the age in years or leave it empty, or pass --lenient to set such ages to missing")
            years = years.set(outside, None)
        age = years.cast(pl.Int16).alias("age")
    news = text("fashion_news_frequency").replace({"None": "NONE"})
    return pl.DataFrame({
        "customer_index": pl.int_range(df.height, dtype=pl.Int32, eager=True),
        "customer_id": ids,
        "FN": flag("FN"),
        "Active": flag("Active"),
        "club_member_status": text("club_member_status"),
        "fashion_news_frequency": news,
        "age": age,
        "postal_code": text("postal_code"),
        "known": pl.Series([True] * df.height, dtype=pl.Boolean),
    })


def read_articles(src: Source, problems: Problems | None = None) -> pl.DataFrame:
    """articles.csv in the contract's schema, file order, known=true; columns the file lacks are null. Rows cut
    short go to `problems` (lenient: they are left out)."""
    problems = problems if problems is not None else Problems(lenient=False)
    found = _columns(src)
    _require(src, found, ("article_id",))
    df = _read_text_table(src, list(dict.fromkeys([*(c for c in KAGGLE_ARTICLE_COLUMNS if c in found), found[-1]])))
    _ids(src, df, "article_id", numeric=True)
    drop = _check_short_rows(src, df, found, problems)
    if problems.lenient and drop.any():
        df = df.filter(~drop)
    ids = _whole(src, df, "article_id", pl.Int64, "article ids are digits, e.g. 0108775015")
    out: dict[str, pl.Series] = {
        "article_index": pl.int_range(df.height, dtype=pl.Int32, eager=True),
        "article_id": ids,
    }
    for col in KAGGLE_ARTICLE_COLUMNS[1:]:
        if col not in df.columns:
            # product_code is the article id without its 3-digit colour variant, so it can be recovered
            out[col] = ((ids // 1000).cast(pl.Int32) if col == "product_code"
                        else pl.Series(col, [None] * df.height, pl.Int32 if col in _ARTICLE_CODES else pl.String))
        elif col in _ARTICLE_CODES:
            out[col] = _whole(src, df, col, pl.Int32, "codes are whole numbers")
        else:
            out[col] = df[col]
    out["known"] = pl.Series([True] * df.height, dtype=pl.Boolean)
    return pl.DataFrame(out)


# ---------------------------------------------------------------------------------------------------------------
# Transactions: large, mapped in one streaming pass (scan -> join id maps -> sink parquet)


def _parsed(name: str, dtype: pl.DataType, target: pl.DataType) -> pl.Expr:
    """Column `name` as `target`; values that do not parse become null (checked afterwards, not per row)."""
    col = pl.col(name)
    if target == pl.Date:
        if dtype == pl.Date:
            return col
        if isinstance(dtype, pl.Datetime):
            return col.dt.date()
        return col.cast(pl.String).str.to_date("%Y-%m-%d", strict=False)
    return col.cast(target, strict=False)


def _scan(src: Source) -> pl.LazyFrame:
    """The transactions with `_row`, the 1-based data row number that error messages cite."""
    if src.is_parquet:
        return pl.scan_parquet(src.path).with_row_index("_row", offset=1)
    return pl.scan_csv(src.path, infer_schema=False, glob=False, row_index_name="_row", row_index_offset=1)


def _typed(lf: pl.LazyFrame, has_channel: bool, raw_channel: bool = False) -> pl.LazyFrame:
    """The five transaction columns parsed (plus the row number, and the unparsed channel if asked)."""
    schema = lf.collect_schema()
    extra = [pl.col("sales_channel_id").cast(pl.String).str.strip_chars().alias("_raw_channel")] if raw_channel else []
    return lf.select(
        "_row",
        pl.col("customer_id").cast(pl.String),
        _parsed("article_id", schema["article_id"], pl.Int64),
        _parsed("t_dat", schema["t_dat"], pl.Date),
        _parsed("price", schema["price"], pl.Float32),
        _parsed("sales_channel_id", schema["sales_channel_id"], pl.Int8) if has_channel
        else pl.lit(None, pl.Int8).alias("sales_channel_id"),
        *extra,
    )


def _problem(column: str, value: str | None) -> str | None:
    """What is wrong with one raw transaction value and how to fix it, or None when it is fine."""
    empty = value is None or value.strip() == ""
    if column == "sales_channel_id":  # optional: empty is fine
        ok = empty or pl.Series([value]).cast(pl.Int8, strict=False)[0] is not None
        return None if ok else "is not a sales channel; write 1 (store), 2 (online) or leave it empty"
    if empty:
        return f"value; every transaction needs its {column}"
    if column == "t_dat" and pl.Series([value]).str.to_date("%Y-%m-%d", strict=False)[0] is None:
        return "is not a date; write dates as YYYY-MM-DD, e.g. 2018-09-20"
    if column == "article_id" and pl.Series([value]).cast(pl.Int64, strict=False)[0] is None:
        return "is not an article id; article ids are digits, e.g. 0108775015"
    if column == "price":
        price = pl.Series([value]).cast(pl.Float64, strict=False)[0]
        if price is None or not abs(price) < float("inf"):
            return "is not a price; write prices as decimal numbers, e.g. 0.0508"
    return None


def _first_bad_row(src: Source, has_channel: bool) -> InputError | None:
    """A second pass, only when the first found nulls: the first row with a bad value, as an error message."""
    typed = _typed(_scan(src), has_channel, raw_channel=has_channel)
    bad = (pl.col("t_dat").is_null() | pl.col("customer_id").is_null() | pl.col("article_id").is_null()
           | pl.col("price").is_null() | ~pl.col("price").is_finite())
    if has_channel:  # an empty channel is allowed, a value that is not a number is not
        bad = bad | (pl.col("sales_channel_id").is_null() & (pl.col("_raw_channel").fill_null("") != ""))
    found = typed.select(pl.col("_row").filter(bad).first(), bad.sum().alias("n")).collect(engine="streaming")
    row, n_bad = found["_row"][0], found["n"][0]
    if not n_bad:
        return None
    raw = _scan(src).slice(row - 1, 1).collect().row(0, named=True)
    more = f" (and {n_bad - 1:,} more rows)" if n_bad > 1 else ""
    for column in (*KAGGLE_TRANSACTION_COLUMNS, "sales_channel_id"):
        value = None if raw.get(column) is None else str(raw[column])
        problem = _problem(column, value)
        if problem is not None:
            shown = "empty" if value is None or value.strip() == "" else repr(value)
            return InputError(f"{src.name}, column {column}, row {row}{more}: {shown} {problem}")
    return InputError(f"{src.name}, row {row}{more}: could not be parsed; check that row")


def _order_key() -> pl.Expr:
    """(t_dat, customer_index) as one int64: sorting by one key costs half of sorting by two columns."""
    return pl.col("t_dat").cast(pl.Int64) * (1 << 32) + pl.col("customer_index").cast(pl.Int64)


def _with_customer_index(lf: pl.LazyFrame, customers: pl.DataFrame, by_hash: bool = True) -> pl.LazyFrame:
    """Add customer_index (null for ids not in `customers`).

    A join on 64-character strings spends its time comparing strings in a 1.4M-entry table; joining on a 64-bit
    hash and checking a second, independent hash costs a quarter less CPU and is still exact unless both hashes
    collide (odds 2^-128). A mismatch only makes an id "unknown", and unknown ids are then matched by string.
    """
    h1, h2 = pl.col("customer_id").hash(seed=1), pl.col("customer_id").hash(seed=2)
    known = customers.select(h1.alias("_h1"), h2.alias("_h2_known"), "customer_index")
    if not by_hash or not known["_h1"].is_unique().all():  # two known ids share a hash: join on the strings
        return lf.join(customers.lazy().select("customer_id", "customer_index"), on="customer_id", how="left",
                       maintain_order="left")
    return (lf.with_columns(h1.alias("_h1"), h2.alias("_h2"))
            .join(known.lazy(), on="_h1", how="left", maintain_order="left")
            .with_columns(pl.when(pl.col("customer_id").is_not_null() & (pl.col("_h2") == pl.col("_h2_known")))
                          .then("customer_index").alias("customer_index")))


def _has_channel(src: Source) -> bool:
    return "sales_channel_id" in _columns(src)


def _map_transactions(src: Source, customers: pl.DataFrame, articles: pl.DataFrame, work: Path
                      ) -> tuple[Path, pl.DataFrame, bool]:
    """One streaming pass: the transactions with mapped indices (null where the id is unknown), then checked.

    Returns the mapped parquet, the rows whose customer or article id was not in the maps (row number and ids), and
    whether the mapped rows are already in (date, customer) order. Values that do not parse become nulls that the
    check finds; only then, or when some ids are unknown, is the file read a second time.
    """
    found = _columns(src)
    _require(src, found, KAGGLE_TRANSACTION_COLUMNS)
    has_channel = "sales_channel_id" in found
    mapped = work / "_mapped.parquet"
    lf = (_with_customer_index(_typed(_scan(src), has_channel), customers)
          .join(articles.lazy().select("article_id", "article_index"), on="article_id", how="left",
                maintain_order="left")
          .select("customer_index", "article_index", "t_dat", "price", "sales_channel_id"))
    size = src.path.stat().st_size
    info(f"ingest: mapping {src.name} ({size / 1e6:,.1f} MB)" if size >= 1e5 else f"ingest: mapping {src.name}")
    # a spinner only on a terminal: in logs and pipes it would leave a blank line
    with progress(transient=True) if console.is_terminal else contextlib.nullcontext() as bar:
        if bar is not None:
            bar.add_task(f"mapping {src.name}", total=None)
        try:
            with artifacts.uninterrupted():  # see there: a sink stopped halfway leaves its writers running
                lf.sink_parquet(mapped, engine="streaming", compression_level=_ZSTD_LEVEL)
        except (pl.exceptions.PolarsError, OSError) as exc:
            if artifacts.is_disk_full(exc):
                raise  # the output's fault, not the input's: `run` names it
            raise _read_error(src, exc) from None
        stats = pl.scan_parquet(mapped).select(
            pl.len().alias("rows"),
            (pl.col("customer_index").null_count() + pl.col("article_index").null_count()).alias("unknown"),
            (pl.col("t_dat").null_count() + pl.col("price").null_count() + (~pl.col("price").is_finite()).sum()
             + (pl.col("sales_channel_id").null_count() if has_channel else 0)).alias("suspect"),
            (_order_key().diff() >= 0).all().alias("sorted"),
        ).collect().row(0, named=True)
        if stats["rows"] == 0:
            raise InputError(f"{src.name} has a header but no rows; it needs at least one row of data")
        rows = _unknown_id_rows(src, mapped) if stats["unknown"] else _NO_ROWS
        if stats["suspect"] or rows["customer_id"].null_count() or rows["article_id"].null_count():
            error = _first_bad_row(src, has_channel)
            if error is not None:
                raise error
    return mapped, rows, bool(stats["sorted"])


_NO_ROWS = pl.DataFrame(schema={"_row": pl.UInt32, "customer_id": pl.String, "article_id": pl.Int64,
                                "customer_index": pl.Int32, "article_index": pl.Int32})


def _unknown_id_rows(src: Source, mapped: Path) -> pl.DataFrame:
    """The rows whose customer or article id was not found, with their ids read again from the source.

    Kept out of the mapping pass, where a second output cost about a sixth more CPU even when no id is unknown.
    """
    misses = (pl.scan_parquet(mapped).with_row_index("_row", offset=1)
              .filter(pl.col("customer_index").is_null() | pl.col("article_index").is_null())
              .select("_row", "customer_index", "article_index").collect())
    # the mapping pass kept file order, so row numbers in the mapped file are the source's row numbers
    ids = _typed(_scan(src), has_channel=False).select("_row", "customer_id", "article_id")
    found = mapped.with_name("_unknown.parquet")  # sink, not collect: the rows stream to disk
    with artifacts.uninterrupted():
        ids.filter(pl.col("_row").is_in(misses["_row"].implode())).sink_parquet(found, engine="streaming")
    rows = pl.read_parquet(found).join(misses, on="_row", how="inner", maintain_order="left")
    found.unlink()
    return rows.select(_NO_ROWS.columns)


def isolated_days(days: pl.DataFrame) -> list[dt.date]:
    """The dates (of `days`: t_dat and its row count n, sorted) at either end that lie more than ISOLATED_DAYS from
    the nearest other date and hold fewer rows than the dates beyond them."""
    d, n = days["t_dat"].to_list(), days["n"].to_list()
    lo, hi, out = 0, len(d) - 1, []
    while lo < hi and (d[lo + 1] - d[lo]).days > ISOLATED_DAYS and n[lo] < sum(n[lo + 1:hi + 1]):
        out.append(d[lo])
        lo += 1
    while lo < hi and (d[hi] - d[hi - 1]).days > ISOLATED_DAYS and n[hi] < sum(n[lo:hi]):
        out.append(d[hi])
        hi -= 1
    return out


def _check_transactions(src: Source, mapped: Path, rows: pl.DataFrame, has_channel: bool,
                        problems: Problems) -> pl.Expr | None:
    """Record the transactions with impossible values: dates after today, dates cut off from the rest (see
    `isolated_days`), negative prices, unknown customer ids that are not Kaggle's (known ones were checked in
    customers.csv), rows cut short. Returns the filter of the mapped rows (`_row`: 1-based, file order) to leave out,
    None when none."""
    today = dt.date.today()
    lf = pl.scan_parquet(mapped).with_row_index("_row", offset=1)
    days = lf.group_by("t_dat").agg(pl.len().alias("n")).sort("t_dat").collect()
    cut_off = isolated_days(days.filter(pl.col("t_dat") <= today))
    after, lone, negative = pl.col("t_dat") > today, pl.col("t_dat").is_in(cut_off), pl.col("price") < 0
    kinds = {"after": after, "lone": lone, "negative": negative}
    if has_channel and not src.is_parquet:  # an empty last value may be a row cut short
        kinds["empty_last"] = pl.col("sales_channel_id").is_null()
    found = lf.select(*(e.sum().alias(k) for k, e in kinds.items()),
                      *(pl.col("_row").filter(e).first().alias(f"{k}_row") for k, e in kinds.items())).collect()
    found = found.row(0, named=True)

    def raw(row: int, column: str) -> object:
        return _scan(src).slice(row - 1, 1).select(column).collect().item()

    span = f"{days['t_dat'][0]}..{days['t_dat'][-1]}" if days.height else ""
    if found["after"]:
        problems.add("transactions dated after today", found["after"],
                     f"{_at(src, 't_dat', found['after_row'], found['after'], raw(found['after_row'], 't_dat'))} is "
                     f"after today ({today}); fix the date, {_LENIENT}")
    if found["lone"]:
        rest = days.filter(~pl.col("t_dat").is_in(cut_off) & (pl.col("t_dat") <= today))["t_dat"]
        within = f" (the other dates run {rest[0]}..{rest[-1]})" if len(rest) else ""
        problems.add("transactions on a date cut off from the rest", found["lone"],
                     f"{_at(src, 't_dat', found['lone_row'], found['lone'], raw(found['lone_row'], 't_dat'))} is "
                     f"more than {ISOLATED_DAYS} days from every other date{within}: a typo? fix the date, {_LENIENT}")
    if found["negative"]:
        problems.add("transactions with a negative price", found["negative"],
                     f"{_at(src, 'price', found['negative_row'], found['negative'], raw(found['negative_row'], 'price'))}"
                     f" is a negative price; prices are 0 or more (e.g. 0.0508): fix it, {_LENIENT}")
    drop = [e for k, e in kinds.items() if k != "empty_last" and found[k]]
    bad_rows: list[int] = []
    if found.get("empty_last"):
        candidates = lf.filter(kinds["empty_last"]).select("_row").collect()["_row"]
        bad_rows += _report_short_rows(src, candidates, len(_columns(src)), problems)
    unknown = rows.filter(pl.col("customer_index").is_null() & pl.col("customer_id").is_not_null())
    if unknown.height:
        bad = _check_customer_ids(src, unknown, "customer_id", problems)
        bad_rows += unknown["_row"].filter(bad).to_list()
    if bad_rows:
        drop.append(pl.col("_row").is_in(bad_rows))
    if not drop:
        return None
    expr = drop[0]
    for e in drop[1:]:
        expr = expr | e
    return expr


def _unknown_rows(rows: pl.DataFrame, known: pl.DataFrame, key: str, index: str) -> pl.DataFrame:
    """Ids referenced by transactions but missing from the metadata, in order of first use, with new indices."""
    ids = rows.filter(pl.col(index).is_null()).sort("_row").get_column(key).unique(maintain_order=True)
    return pl.DataFrame({index: pl.int_range(known.height, known.height + len(ids), dtype=pl.Int32, eager=True),
                         key: ids})


def _append_unknown(known: pl.DataFrame, new: pl.DataFrame) -> pl.DataFrame:
    extra = new.with_columns(pl.lit(False).alias("known"))
    if "article_id" in new.columns:
        extra = extra.with_columns((pl.col("article_id") // 1000).cast(pl.Int32).alias("product_code"))
    else:
        extra = extra.with_columns(pl.lit(0, pl.Int8).alias("FN"), pl.lit(0, pl.Int8).alias("Active"))
    return pl.concat([known, extra], how="diagonal_relaxed").select(known.columns).cast(known.schema)


def _finish_transactions(mapped: Path, target: Path, rows: pl.DataFrame, new_customers: pl.DataFrame,
                         new_articles: pl.DataFrame, in_order: bool, keep_unknown: bool,
                         drop: pl.Expr | None = None) -> None:
    """Write the final transactions: the rows `drop` selects left out (--lenient), unknown ids filled in (or their
    rows dropped), sorted by date and customer."""
    if rows.height == 0 and in_order and drop is None:
        os.replace(mapped, target)  # the Kaggle file is already in (date, customer) order: nothing to redo
        return
    # the mapping pass kept file order, so the row number is the source's, and joins the fixes back
    lf = pl.scan_parquet(mapped).with_row_index("_row", offset=1)
    if drop is not None:
        lf = lf.filter(~drop)
    if rows.height and keep_unknown:
        fix = (rows.join(new_customers, on="customer_id", how="left", suffix="_new")
               .join(new_articles, on="article_id", how="left", suffix="_new")
               .select("_row", pl.coalesce("customer_index", "customer_index_new").alias("_ci"),
                       pl.coalesce("article_index", "article_index_new").alias("_ai")))
        lf = (lf.join(fix.lazy(), on="_row", how="left", maintain_order="left")
              .with_columns(pl.coalesce("customer_index", "_ci").alias("customer_index"),
                            pl.coalesce("article_index", "_ai").alias("article_index")))
    elif rows.height:
        lf = lf.filter(pl.col("customer_index").is_not_null() & pl.col("article_index").is_not_null())
    lf = lf.select("customer_index", "article_index", "t_dat", "price", "sales_channel_id")
    if not in_order or (rows.height and keep_unknown):  # new indices of unknown customers move rows
        info("ingest: sorting transactions by date and customer")
        lf = lf.sort(_order_key(), maintain_order=True)
    with artifacts.uninterrupted():
        lf.sink_parquet(target, engine="streaming", compression_level=_ZSTD_LEVEL)
    mapped.unlink()


def run(cfg: Config, inp: Path | None = None, out: Path | None = None, force: bool = False) -> Path:
    """Read the raw files into tables/: transactions, customers and articles parquet with contiguous indices."""
    started = time.perf_counter()
    inp = Path(inp) if inp is not None else Path(cfg.workdir) / artifacts.RAW
    out = Path(out) if out is not None else Path(cfg.workdir) / artifacts.TABLES
    sources = find_sources(inp)
    inputs = sorted({s.path for s in sources.values()})  # only the files read: images or notes beside them don't count
    if artifacts.skip_if_current(out, "ingest", cfg.section("ingest"), inputs, force):
        return out
    try:
        _write_tables(cfg, sources, inputs, out, started)
    except (pl.exceptions.PolarsError, OSError) as exc:
        if not artifacts.is_disk_full(exc):
            raise
        raise artifacts.disk_full(out) from None  # a full disk or a size limit: the output, never the input CSV
    return out


def _write_tables(cfg: Config, sources: dict[str, Source], inputs: list[Path], out: Path, started: float) -> None:
    with artifacts.StepOutput(out, "ingest", cfg.to_dict(), cfg.section("ingest"), inputs=inputs,
                              started=started) as so:
        scratch = so.dir / "_extract"
        tx_src, cu_src, ar_src = (_materialize(sources[k], scratch) for k in ("transactions", "customers", "articles"))
        problems = Problems(lenient=cfg.ingest.lenient)
        customers = read_customers(cu_src, problems)
        articles = read_articles(ar_src, problems)
        info(f"ingest: {customers.height:,} customers from {cu_src.name}, {articles.height:,} articles from "
             f"{ar_src.name}")

        mapped, rows, in_order = _map_transactions(tx_src, customers, articles, so.dir)
        drop = _check_transactions(tx_src, mapped, rows, _has_channel(tx_src), problems)
        problems.settle()
        if drop is not None and rows.height:  # rows left out make no unknown customers or articles
            left_out = pl.scan_parquet(mapped).with_row_index("_row", offset=1).filter(drop).select("_row").collect()
            rows = rows.filter(~pl.col("_row").is_in(left_out["_row"].implode()))
        new_customers = _unknown_rows(rows, customers, "customer_id", "customer_index")
        new_articles = _unknown_rows(rows, articles, "article_id", "article_index")
        unknown_rows = rows.height
        if unknown_rows:
            info(f"ingest: {unknown_rows:,} transactions reference {new_customers.height:,} customers and "
                 f"{new_articles.height:,} articles missing from the metadata files; "
                 + ("added them as unknown rows (known=false)" if cfg.ingest.keep_unknown else "dropped them"))
            if cfg.ingest.keep_unknown:
                customers = _append_unknown(customers, new_customers)
                articles = _append_unknown(articles, new_articles)
        target = so.dir / artifacts.TRANSACTIONS_PARQUET
        _finish_transactions(mapped, target, rows, new_customers, new_articles, in_order, cfg.ingest.keep_unknown,
                             drop)

        for frame, name in ((customers, artifacts.CUSTOMERS_PARQUET), (articles, artifacts.ARTICLES_PARQUET)):
            try:
                with artifacts.uninterrupted():
                    frame.write_parquet(so.dir / name, compression_level=_ZSTD_LEVEL)
            except (pl.exceptions.PolarsError, OSError) as exc:  # the frame is in memory: the write failed
                raise artifacts.write_failed(so.dir / name, exc) from None
        shutil.rmtree(scratch, ignore_errors=True)
        n_tx = pl.scan_parquet(target).select(pl.len()).collect().item()
        so.rows = {"transactions": n_tx, "customers": customers.height, "articles": articles.height}
        so.extra["unknown"] = {"customers": new_customers.height, "articles": new_articles.height}
        so.extra["unknown_transactions"] = unknown_rows
        if not cfg.ingest.keep_unknown:
            so.extra["dropped_transactions"] = unknown_rows
        if problems.counts:
            so.extra["left_out"] = problems.counts  # --lenient: rows left out (ages set to missing) per reason
        info(f"ingest: {n_tx:,} transactions, {customers.height:,} customers, {articles.height:,} articles")


# ---------------------------------------------------------------------------------------------------------------
# `hmgnn update`: a later week's files, checked as the first ones were

CUSTOMER_SCHEMA = {"customer_index": pl.Int32, "customer_id": pl.String, "FN": pl.Int8, "Active": pl.Int8,
                   "club_member_status": pl.String, "fashion_news_frequency": pl.String, "age": pl.Int16,
                   "postal_code": pl.String, "known": pl.Boolean}
"""tables/customers.parquet's columns, as `read_customers` gives them."""
ARTICLE_SCHEMA = {"article_index": pl.Int32, "article_id": pl.Int64,
                  **{c: pl.Int32 if c in _ARTICLE_CODES else pl.String for c in KAGGLE_ARTICLE_COLUMNS[1:]},
                  "known": pl.Boolean}
"""tables/articles.parquet's columns, as `read_articles` gives them."""


@dataclass
class Additions:
    """What a later week's files add to the tables (`hmgnn update`).

    Args:
        transactions: its purchases, tables/transactions.parquet's columns, in (date, customer) order, indexed in
            the current id maps extended by the new rows below.
        customers, articles: the rows that are new (CUSTOMER_SCHEMA, ARTICLE_SCHEMA), their indices following the
            current ones in file order.
        source: the transactions file, as messages name it.
    """

    transactions: pl.DataFrame
    customers: pl.DataFrame
    articles: pl.DataFrame
    source: str

    @property
    def first_day(self) -> dt.date:
        return self.transactions["t_dat"].min()

    @property
    def last_day(self) -> dt.date:
        return self.transactions["t_dat"].max()


def read_update(inp: Path, customers: pl.DataFrame, articles: pl.DataFrame, last_day: dt.date, work: Path,
                lenient: bool = False) -> Additions:
    """The new files in `inp` (transactions; customers and articles optional, with the new rows), checked as `ingest`
    checks its files, plus two checks of their own: every purchase is dated after `last_day` (the current data's
    last day), and every id is in the current id maps (`customers`: customer_index, customer_id; `articles`:
    article_index, article_id) or among the new rows. Rows of ids the maps hold already are not new and are skipped
    (a whole customers.csv may be passed). `work` is a scratch folder."""
    sources = find_sources(inp, required=("transactions",))
    scratch = work / "_extract"
    problems = Problems(lenient=lenient)
    new_customers = pl.DataFrame(schema=CUSTOMER_SCHEMA)
    new_articles = pl.DataFrame(schema=ARTICLE_SCHEMA)
    if "customers" in sources:
        new_customers = _new_rows(read_customers(_materialize(sources["customers"], scratch), problems), customers,
                                  "customer_id", "customer_index")
    if "articles" in sources:
        new_articles = _new_rows(read_articles(_materialize(sources["articles"], scratch), problems), articles,
                                 "article_id", "article_index")
    customer_map = pl.concat([customers.select(pl.col("customer_id"), pl.col("customer_index").cast(pl.Int32)),
                              new_customers.select("customer_id", "customer_index")])
    article_map = pl.concat([articles.select(pl.col("article_id").cast(pl.Int64),
                                             pl.col("article_index").cast(pl.Int32)),
                             new_articles.select("article_id", "article_index")])

    src = _materialize(sources["transactions"], scratch)
    mapped, rows, _ = _map_transactions(src, customer_map, article_map, work)
    drop = _check_transactions(src, mapped, rows, _has_channel(src), problems)
    problems.settle()
    purchases = pl.scan_parquet(mapped).with_row_index("_row", offset=1)
    if drop is not None:  # --lenient: those rows are left out, and their ids need not be known
        purchases = purchases.filter(~drop)
        kept = purchases.select("_row").collect()["_row"]
        rows = rows.filter(pl.col("_row").is_in(kept.implode()))
    if rows.height:
        first = rows.sort("_row").row(0, named=True)
        kind = "customer" if first["customer_index"] is None else "article"
        value = first["customer_id"] if kind == "customer" else artifacts.article_label(first['article_id'])
        more = f" (and {rows.height - 1:,} more rows)" if rows.height > 1 else ""
        raise InputError(f"{src.name}, column {kind}_id, row {first['_row']}{more}: {kind} {value} is neither in the "
                         f"current data nor among the new rows of {KAGGLE_NAMES[kind + 's']}; add its row to "
                         f"{Path(inp) / KAGGLE_NAMES[kind + 's']} (the new {kind}s only)")
    early = purchases.filter(pl.col("t_dat") <= last_day).select(
        pl.col("_row").first(), pl.col("t_dat").first(), pl.len().alias("n")).collect().row(0, named=True)
    if early["n"]:
        more = f" (and {early['n'] - 1:,} more rows)" if early["n"] > 1 else ""
        raise InputError(f"{src.name}, column t_dat, row {early['_row']}{more}: {early['t_dat']} is on or before the "
                         f"current data's last day, {last_day}; update adds purchases dated after it (leave out the "
                         "rows the data holds already, or fix the date)")
    transactions = (purchases.drop("_row").sort(_order_key(), maintain_order=True)
                    .select("customer_index", "article_index", "t_dat", "price", "sales_channel_id").collect())
    mapped.unlink(missing_ok=True)
    shutil.rmtree(scratch, ignore_errors=True)
    return Additions(transactions, new_customers, new_articles, src.name)


def _new_rows(frame: pl.DataFrame, current: pl.DataFrame, key: str, index: str) -> pl.DataFrame:
    """The rows of `frame` whose `key` `current` lacks (the first of repeated ones), indexed after `current`'s."""
    new = (frame.filter(~pl.col(key).is_in(current[key].cast(frame[key].dtype).implode()))
           .unique(key, keep="first", maintain_order=True))
    skipped = frame.height - new.height
    if skipped:
        info(f"update: {skipped:,} of {frame.height:,} {key.removesuffix('_id')} rows are known already (or repeated); "
             "only the new ones are added")
    return new.with_columns(pl.int_range(current.height, current.height + new.height, dtype=pl.Int32, eager=True)
                            .alias(index))

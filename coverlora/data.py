"""Load, validate, clean and split the cover-letter data.

Every problem is reported before any heavy work as one line naming the file, the row (as the CSV's line
number, which is what an editor shows) and the column.
"""

from __future__ import annotations

import csv
import hashlib
import io
import re
import sys
from pathlib import Path

import pandas as pd

from coverlora.errors import UserError
from coverlora.fields import COLUMNS, FIELDS, REQUIRED_FIELDS
from coverlora.hub import looks_local, require_hub
from coverlora.prompts import JOB_SECTION, LETTER_SECTION, RESUME_SECTION
from coverlora.text import clean_text

# A cover letter is a few thousand characters; a cell far beyond that is a broken export, not data.
MAX_FIELD_CHARS = 20_000
csv.field_size_limit(sys.maxsize)  # oversized cells get our own error below, not the csv module's
HUB_ID = re.compile(r"^[\w.-]+/[\w.-]+$")
# Columns a CSV may carry besides ours: pandas' saved index.
IGNORED_COLUMNS = re.compile(r"^(Unnamed: \d+|index|)$")
SAMPLE_BLOCK = re.compile(r"\n*#{2,}\s*Sample\b.*", re.S | re.I)
SECTION_HEADER = re.compile(rf"\n*#{{2,}}\s*({JOB_SECTION}|{RESUME_SECTION}|Instruction)\s*:.*", re.S | re.I)
PROMPT_ECHO = re.compile(rf"^.*?#{{2,}}\s*{LETTER_SECTION}\s*:\s*", re.S | re.I)


def clean_letter(text: str) -> str:
    """Strip generation artifacts (prompt echoes, `### Sample` blocks, trailing sections) from a letter."""
    text = PROMPT_ECHO.sub("", text, count=1)
    text = SAMPLE_BLOCK.sub("", text)
    text = SECTION_HEADER.sub("", text)
    return clean_text(text)


def _line_numbers(raw: str) -> list[int]:
    """CSV line on which each data row starts (rows may span lines inside quotes)."""
    starts, reader = [], csv.reader(io.StringIO(raw))
    next(reader, None)
    line = reader.line_num + 1
    for record in reader:
        if record:  # pandas skips blank lines: counting them would shift every later row's number
            starts.append(line)
        line = reader.line_num + 1
    return starts


def read_csv(path: Path, *, require_target: bool = True) -> pd.DataFrame:
    """Read one split into a DataFrame keyed by field names (see fields.py), with `row_id` and `line`."""
    where = str(path)
    if not path.is_file():
        raise UserError("file not found", where=where, fix="check the --data path")
    blob = path.read_bytes()
    try:
        raw = blob.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = blob[: exc.start].count(b"\n") + 1
        raise UserError(f"line {line}: not UTF-8 (byte 0x{blob[exc.start]:02x})", where=where,
                        fix="re-save the file as UTF-8") from None
    if not raw.strip():
        raise UserError("file is empty", where=where, fix="give a CSV with a header row and data rows")
    header = next(csv.reader(io.StringIO(raw)))
    _check_header(header, where, require_target)
    try:
        frame = pd.read_csv(io.StringIO(raw), dtype=str, keep_default_na=False, na_values=[], on_bad_lines="error")
    except (pd.errors.ParserError, csv.Error) as exc:
        detail = str(exc).strip().splitlines()[-1]
        raise UserError(f"malformed CSV ({detail})", where=where,
                        fix="check quoting and that every row has one value per column") from None
    if frame.empty:
        raise UserError("has a header but no data rows", where=where)
    lines = _line_numbers(raw)
    frame.columns = [str(name).strip() for name in frame.columns]  # " Skillsets" passed the header check too
    frame = frame.rename(columns=COLUMNS)
    present = [name for name in FIELDS if name in frame.columns]
    frame = frame[present].copy()
    for name in present:
        frame[name] = frame[name].map(clean_text)
    frame.insert(0, "row_id", range(len(frame)))
    frame["line"] = lines[: len(frame)] if len(lines) >= len(frame) else range(2, len(frame) + 2)
    _check_repeated_header(frame, where)
    _check_cells(frame, where, require_target)
    return frame


def _check_repeated_header(frame: pd.DataFrame, where: str) -> None:
    """Concatenated exports repeat the header mid-file; as data it would be trained on as a letter."""
    headers = {field: header for header, field in COLUMNS.items() if field in frame.columns}
    repeated = frame.index[sum((frame[f].str.strip() == h) for f, h in headers.items()) >= max(2, len(headers) // 2)]
    if len(repeated):
        row = frame.loc[repeated[0]]
        raise UserError(f"line {row['line']} (row {row['row_id']}) repeats the header row", where=where,
                        fix="delete the repeated header lines (files joined together?)")


def _check_header(header: list[str], where: str, require_target: bool) -> None:
    header = [name.strip() for name in header]
    if len(header) == 1 and (";" in header[0] or "\t" in header[0]):
        raise UserError("one column only: the file is not comma-separated", where=where,
                        fix="save it as a comma-separated CSV")
    seen = set()
    for name in header:
        if name in seen and name:
            raise UserError(f"column '{name}' appears twice", where=where, fix="keep one copy of each column")
        seen.add(name)
    needed = [col for col in COLUMNS if require_target or COLUMNS[col] != "cover_letter"]
    missing = [col for col in needed if col not in header]
    if missing:
        unknown = [name for name in header if name not in COLUMNS and not IGNORED_COLUMNS.match(name)]
        hint = f"; found unexpected {', '.join(repr(u) for u in unknown)}" if unknown else ""
        raise UserError(f"missing column{'s' if len(missing) > 1 else ''} {', '.join(repr(m) for m in missing)}{hint}",
                        where=where, fix=f"the header must name: {', '.join(COLUMNS)}")


def _check_cells(frame: pd.DataFrame, where: str, require_target: bool) -> None:
    required = [f for f in REQUIRED_FIELDS if require_target or f != "cover_letter"]
    columns = {v: k for k, v in COLUMNS.items()}
    for name in [f for f in FIELDS if f in frame.columns]:
        lengths = frame[name].str.len()
        if lengths.max() > MAX_FIELD_CHARS:
            row = frame.loc[lengths.idxmax()]
            raise UserError(f"line {row['line']} (row {row['row_id']}), column '{columns[name]}' is {len(row[name]):,} "
                            f"characters long (limit {MAX_FIELD_CHARS:,})", where=where,
                            fix="check the export: a cell this long is usually several rows run together")
    for name in required:
        bad = frame.index[~frame[name].str.contains(r"[^\W\d_]", regex=True)]
        if len(bad):
            row = frame.loc[bad[0]]
            more = f" (and {len(bad) - 1} more rows)" if len(bad) > 1 else ""
            problem = "is empty" if not row[name].strip() else f"holds no text ({row[name][:30]!r})"
            raise UserError(f"line {row['line']} (row {row['row_id']}), column '{columns[name]}' {problem}{more}",
                            where=where, fix="fill it in or drop the row (scripts/filter.py)")


def _hub_splits(source: str) -> dict[str, pd.DataFrame]:
    try:
        import datasets
        loaded = datasets.load_dataset(source)
    except Exception as exc:  # any hub/network failure becomes one readable line
        raise UserError(f"cannot load hub dataset ({type(exc).__name__}: {str(exc).splitlines()[0][:200]})",
                        where=source, fix="check the id and network, or pass a local CSV or folder") from None
    frames = {}
    for split, table in loaded.items():
        buffer = io.StringIO()
        table.to_pandas().to_csv(buffer, index=False)
        frames[split] = buffer.getvalue()
    return frames


def load_split(source: str, split: str, *, require_target: bool = True) -> pd.DataFrame:
    """`source` is a CSV (taken as the split asked for), a folder with `<split>.csv`, or a hub id."""
    path = Path(source)
    if path.is_dir():
        candidate = path / f"{split}.csv"
        if not candidate.is_file():
            raise UserError(f"no {split}.csv in this folder", where=str(path),
                            fix=f"put {split}.csv there or pass the CSV itself")
        return read_csv(candidate, require_target=require_target)
    if looks_local(source) or not HUB_ID.match(source):
        return read_csv(path, require_target=require_target)
    require_hub(source, "dataset")
    splits = _hub_splits(source)
    if split not in splits:
        raise UserError(f"hub dataset has no '{split}' split (has {', '.join(splits)})", where=source)
    cache = Path.home() / ".cache" / "coverlora" / "hub" / source.replace("/", "__")
    cache.mkdir(parents=True, exist_ok=True)
    (cache / f"{split}.csv").write_text(splits[split], encoding="utf-8")
    return read_csv(cache / f"{split}.csv", require_target=require_target)


def train_val_split(frame: pd.DataFrame, val_fraction: float, seed: int) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Hold out a fixed-seed share of the training rows; the test split is never touched here."""
    if val_fraction == 0 or len(frame) < 2:
        return frame, frame.iloc[0:0]
    n_val = max(1, round(len(frame) * val_fraction))
    shuffled = frame.sample(frac=1.0, random_state=seed)
    return shuffled.iloc[n_val:].sort_values("row_id"), shuffled.iloc[:n_val].sort_values("row_id")


def frame_hash(frame: pd.DataFrame) -> str:
    """A fingerprint of the rows' content, recorded with outputs so mismatched files are caught."""
    digest = hashlib.sha256()
    for row in frame[[f for f in FIELDS if f in frame.columns]].itertuples(index=False):
        digest.update("\x1f".join(row).encode("utf-8"))
        digest.update(b"\x1e")
    return digest.hexdigest()[:16]


def check_no_overlap(train: pd.DataFrame, test: pd.DataFrame, train_where: str) -> None:
    """Giving the test split as training data would make every later score meaningless."""
    if len(train) == len(test) and frame_hash(train) == frame_hash(test):
        raise UserError("the training data is the test split", where=train_where,
                        fix="pass the training CSV (or the folder holding train.csv and test.csv)")


def write_split(frame: pd.DataFrame, path: Path) -> None:
    """Write rows back in the dataset's own CSV layout (original column names), atomically."""
    from coverlora.runs.layout import atomic_path

    out = frame[[f for f in FIELDS if f in frame.columns]].rename(columns={v: k for k, v in COLUMNS.items()})
    with atomic_path(path) as tmp:
        out.to_csv(tmp, index=False)


def training_rows(cfg):
    """(all rows used, training rows, held-out validation rows) for a TrainConfig, validated; later stages rebuild
    the validation rows from the saved config through this same function."""
    frame = load_split(cfg.data, "train")
    if cfg.max_train_rows:
        frame = frame.iloc[: cfg.max_train_rows]
    if Path(cfg.data).is_dir() and (Path(cfg.data) / "test.csv").is_file():
        check_no_overlap(frame, load_split(cfg.data, "test"), cfg.data)
    if cfg.clean:
        frame["cover_letter"] = frame["cover_letter"].map(clean_letter)
        _check_cells(frame, cfg.data, True)  # a letter that was only a prompt echo is empty now
    train_rows, val_rows = train_val_split(frame, cfg.val_fraction, cfg.seed)
    return frame, train_rows, val_rows

"""Dataset readers: CSV, JSONL and plain-text files or folders, all yielding `SongText` records.

CSV goes through Python's `csv` module in strict mode because lyrics are multi-line quoted fields:
the original Billion Songs' first line-based reader split songs in half. Any row we cannot trust
stops the run with the file and line, rather than silently training on garbage.
"""

import csv
import json
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from billionsongs.lyrics.document import split_document


class DataError(ValueError):
    """A dataset problem, always naming the file and (where there is one) the line."""


@dataclass(frozen=True)
class SongText:
    title: str
    lyrics: str
    source: str


_TAG_LINE = re.compile(r"^\s*\[[^\]\n]*\]\s*$")
_BLANKS = re.compile(r"\n{3,}")


def clean_lyrics(text: str) -> str:
    """Drop section-tag lines ([Chorus: X]) and normalise blank lines; stanza breaks stay."""
    lines = [line.rstrip() for line in text.replace("\r\n", "\n").replace("\r", "\n").split("\n")]
    text = "\n".join(line for line in lines if not _TAG_LINE.match(line))
    return _BLANKS.sub("\n\n", text).strip()


def read_csv(path: Path, column: str, title_column: str | None) -> Iterator[SongText]:
    lines_read = 0  # counted here: csv's own line_num lags by one on some errors

    def physical_lines(handle):
        nonlocal lines_read
        for line in handle:
            lines_read += 1
            yield line

    with open(path, encoding="utf-8-sig", newline="") as handle:
        reader = csv.DictReader(physical_lines(handle), strict=True)
        try:
            header = reader.fieldnames or []
            for needed in (column, title_column):
                if needed and needed not in header:
                    raise DataError(f"{path}:1: missing column {needed!r} (columns: {', '.join(header)})")
            start = lines_read + 1
            for row in reader:
                where = f"{path}:{start}"
                if None in row:
                    raise DataError(f"{where}: {len(header) + len(row[None])} fields, header has {len(header)}")
                if any(value is None for value in row.values()):
                    raise DataError(f"{where}: fewer fields than the header's {len(header)}")
                yield SongText((row[title_column] or "").strip() if title_column else "", row[column], where)
                start = lines_read + 1
        except csv.Error as exc:
            raise DataError(f"{path}:{lines_read}: malformed CSV ({exc})") from None
        except UnicodeDecodeError as exc:
            raise DataError(f"{path}: not UTF-8 text near line {lines_read + 1} ({exc.reason})") from None


def read_jsonl(path: Path, column: str, title_column: str | None) -> Iterator[SongText]:
    with open(path, encoding="utf-8-sig") as handle:
        for number, line in enumerate(handle, 1):
            if not line.strip():
                continue
            try:
                record = json.loads(line)
            except json.JSONDecodeError as exc:
                raise DataError(f"{path}:{number}: invalid JSON ({exc.msg})") from None
            if not isinstance(record, dict) or not isinstance(record.get(column), str):
                raise DataError(f"{path}:{number}: no text field {column!r}")
            title = record.get(title_column) if title_column else ""
            yield SongText(str(title or "").strip(), record[column], f"{path}:{number}")


def read_text(path: Path) -> SongText:
    """One song per file; a leading 'Title' + blank line is the title, else the file name is."""
    try:
        text = path.read_text(encoding="utf-8-sig")
    except UnicodeDecodeError as exc:
        raise DataError(f"{path}: not UTF-8 text ({exc.reason})") from None
    title, lyrics = split_document(text)
    return SongText(title or path.stem.replace("_", " ").strip(), lyrics, str(path))


def read_songs(paths: list[str | Path], column: str = "text", title_column: str | None = None,
               include: str = "*.txt") -> Iterator[SongText]:
    """All songs in `paths`, in a stable order; empty lyrics are skipped."""
    for raw in paths:
        path = Path(raw)
        if path.is_dir():
            files = sorted(p for p in path.rglob(include) if p.is_file())
            if not files:
                raise DataError(f"{path}: no files match {include!r}")
            songs = (_read_file(p, column, title_column) for p in files)
            yield from (song for group in songs for song in group)
        elif path.is_file():
            yield from _read_file(path, column, title_column)
        else:
            raise DataError(f"{path}: no such file or folder")


def _read_file(path: Path, column: str, title_column: str | None) -> Iterator[SongText]:
    suffix = path.suffix.lower()
    if suffix in (".csv", ".tsv"):
        records = read_csv(path, column, title_column)
    elif suffix in (".jsonl", ".ndjson"):
        records = read_jsonl(path, column, title_column)
    else:
        records = iter([read_text(path)])
    for record in records:
        lyrics = clean_lyrics(record.lyrics)
        if lyrics:
            yield SongText(record.title, lyrics, record.source)

"""Uploaded CSV, NDJSON or JSON-array files; each upload is one sync."""

from __future__ import annotations

import csv
import io
from collections import deque
from collections.abc import Iterator
from itertools import islice
from typing import Any

import ijson
from flask import current_app
from ijson.common import ObjectBuilder
from sqlalchemy import select

from ..models import SourceFile, SourceFileChunk, db
from ..values import documents
from ..values.records import Incoming
from .base import Batch, Batches, Connection, ReadContext, SourceError, SourceType, TestResult, register
from .fields import Field

FORMATS = (
    ("auto", "Detect from the file name"),
    ("csv", "CSV"),
    ("ndjson", "NDJSON (one JSON object per line)"),
    ("json", "JSON array"),
)


# csv's default 128 KiB per field refused whole files for one long text (an HTML body, a
# description). Each read sets it to the record size limit: a longer field makes its row
# malformed (the reader goes on with the next one), and no field is held past it.
# Process-wide: nothing else in hookstream reads CSV.


def detect_format(filename: str, declared: str | None) -> str:
    if declared and declared != "auto":
        return declared
    lowered = filename.lower()
    if lowered.endswith((".ndjson", ".jsonl")):
        return "ndjson"
    if lowered.endswith(".json"):
        return "json"
    return "csv"


class ChunkReader(io.RawIOBase):
    """A file stored as chunks, read one chunk (1 MiB) at a time."""

    def __init__(self, file_id: str):
        self.file_id, self.seq, self.buffer = file_id, 0, b""

    def readable(self) -> bool:
        return True

    def readinto(self, target: Any) -> int:  # a writable buffer (memoryview, bytearray)
        while not self.buffer:
            chunk = db.session.scalar(
                select(SourceFileChunk.data).where(
                    SourceFileChunk.file_id == self.file_id, SourceFileChunk.seq == self.seq
                )
            )
            if chunk is None:
                return 0
            self.seq += 1
            self.buffer = bytes(chunk)
        n = min(len(target), len(self.buffer))
        target[:n], self.buffer = self.buffer[:n], self.buffer[n:]
        return n


class Malformed(str):
    """A row that could not be read; the text says which and why. The rest still applies."""


_OPENS, _CLOSES = {"start_map", "start_array"}, {"end_map", "end_array"}


def _array_items(raw: io.BufferedReader[Any], max_bytes: int) -> Iterator[dict | Malformed]:
    """The items of a top-level JSON array, one at a time, from ijson's plain events.
    (ijson.items keeps a path for every level it is inside, which a file of 100,000 `[`
    turned into gigabytes; an item nested past documents.MAX_DEPTH, or larger than
    `max_bytes` as it is read, is not built at all.)"""
    events = ijson.basic_parse(raw, use_float=True)
    first = next(events, (None, None))[0]
    if first != "start_array":
        raise ValueError("the file is not a JSON array of records: upload [{…}, …] or NDJSON")
    number = 0
    for event, value in events:
        if event == "end_array":
            deque(events, maxlen=0)  # read to the end: anything after the array is an error ijson reports
            return
        number += 1
        if event not in _OPENS:
            yield Malformed(f"item {number} is not a JSON object")
            continue
        item = _array_item(event, value, events, max_bytes)
        if isinstance(item, dict):
            yield item
        else:
            yield Malformed(f"item {number} {item}")


def _array_item(event: str, value: object, events: Iterator[tuple[str, Any]], max_bytes: int) -> object:
    """The item that `event` opens, read to its end: a dict, or what is wrong with it."""
    first = ObjectBuilder()
    first.event(event, value)
    builder: ObjectBuilder | None = first
    depth, size, problem = 1, 1, "is not a JSON object"
    for event, value in events:
        depth += (event in _OPENS) - (event in _CLOSES)
        size += len(value) + 4 if isinstance(value, str) else 8  # about what it takes as JSON
        if depth > documents.MAX_DEPTH:
            builder, problem = None, str(documents.TooDeep())
        elif size > max_bytes and builder is not None:
            builder, problem = None, f"is larger than the record size limit ({max_bytes:,} bytes)"
        if builder is not None:
            builder.event(event, value)
        if depth == 0:
            break
    return builder.value if builder is not None and isinstance(builder.value, dict) else problem


def _lines(text: io.TextIOWrapper, max_bytes: int) -> Iterator[tuple[int, str | None]]:
    """(number, line) of a text file, a line longer than `max_bytes` as None: read past in
    pieces, never held whole."""
    number = 0
    while True:
        line = text.readline(max_bytes + 1)
        if not line:
            return
        number += 1
        if len(line) > max_bytes and not line.endswith("\n"):
            while line and not line.endswith("\n"):
                line = text.readline(1024 * 1024)
            yield number, None
        else:
            yield number, line


def iter_records(
    stored: SourceFile, config: dict, max_bytes: int = 1024 * 1024
) -> Iterator[dict | Malformed]:
    """Records of an uploaded file, streamed. A bad row (or one larger than `max_bytes`) is
    yielded as Malformed and reading goes on; a file that cannot be read at all raises
    ValueError."""
    raw = io.BufferedReader(ChunkReader(stored.id), buffer_size=64 * 1024)
    fmt = detect_format(stored.filename, stored.format)
    if fmt == "json":
        yield from _json_records(raw, max_bytes)
        return
    text = io.TextIOWrapper(raw, encoding="utf-8-sig", errors="strict", newline="")
    try:
        if fmt == "ndjson":
            yield from _ndjson_records(text, max_bytes)
        else:
            yield from _csv_rows(text, config, max_bytes)
    except UnicodeDecodeError:
        raise ValueError("the file is not UTF-8 text") from None
    except csv.Error as exc:
        raise ValueError(f"CSV error: {exc}") from None


def _json_records(raw: io.BufferedReader[Any], max_bytes: int) -> Iterator[dict | Malformed]:
    # An object at the top ({"data": [...]}, a common API dump) would read as no records.
    if raw.peek(4096).lstrip(b"\xef\xbb\xbf \t\r\n")[:1] == b"{":
        raise ValueError("the file holds a JSON object, not an array of records: upload [{…}, …] or NDJSON")
    try:
        yield from _array_items(raw, max_bytes)
    except ijson.JSONError as exc:
        raise ValueError(f"not a valid JSON array: {exc}") from None


def _ndjson_records(text: io.TextIOWrapper, max_bytes: int) -> Iterator[dict | Malformed]:
    for number, line in _lines(text, max_bytes):
        if line is None:
            yield Malformed(f"line {number} is larger than the record size limit ({max_bytes:,} bytes)")
            continue
        if not line.strip():
            continue
        try:
            item = documents.loads(line)
        except documents.Refused as exc:
            yield Malformed(f"line {number} {exc}")
            continue
        except ValueError:
            yield Malformed(f"line {number} is not valid JSON")
            continue
        yield item if isinstance(item, dict) else Malformed(f"line {number} is not a JSON object")


def _csv_rows(text: io.TextIOWrapper, config: dict, max_bytes: int) -> Iterator[dict | Malformed]:
    csv.field_size_limit(max_bytes)
    delimiter = (config.get("delimiter") or ",")[:1]
    header = config.get("has_header") is not False
    # Rows are dicts with a header, lists without.
    reader: Any = (
        csv.DictReader(text, delimiter=delimiter) if header else csv.reader(text, delimiter=delimiter)
    )
    if header and not reader.fieldnames:
        raise ValueError("the CSV file has no header row")
    while True:
        try:
            row = next(reader)
        except StopIteration:
            return
        except csv.Error as exc:
            if "field larger than field limit" not in str(exc):
                raise
            # The reader stops inside the row and goes on with the line after it.
            yield Malformed(
                f"line {reader.line_num + 1} holds a field larger than the record size limit "
                f"({max_bytes:,} bytes)"
            )
            continue
        if not header:
            yield {f"column_{i}": value for i, value in enumerate(row, start=1)}
        elif None in row:
            yield Malformed(f"line {reader.line_num} has more values than the header has columns")
        elif None in row.values():  # DictReader fills a short row with None
            yield Malformed(f"line {reader.line_num} has fewer values than the header has columns")
        else:
            yield row


def _size(row: dict) -> int:
    """About what a row takes as JSON, for cutting batches by bytes (a walk only when nested)."""
    return sum(
        len(v) + len(k) + 6
        if isinstance(v, str) and isinstance(k, str)
        else len(documents.dumps(v)) + len(str(k)) + 4
        for k, v in row.items()
    )


@register
class File(SourceType):
    short_name = "file"
    name = "File upload"
    description = "Upload CSV, NDJSON or JSON files in the browser or by API; each upload is a sync."
    name_example = "Monthly export"
    auth_methods = ("none",)
    labels = ("file", "csv", "json")
    scheduled = False  # each upload is its run
    uploads, upload_formats = True, FORMATS
    full_read_complete = False
    config_fields = (
        Field("format", "select", "Format", default="auto", options=FORMATS),
        Field("delimiter", "string", "CSV delimiter", default=",", max_length=1),
        Field(
            "has_header",
            "boolean",
            "First CSV row is a header",
            default=True,
            description="Off: columns are named column_1, column_2, …",
        ),
    )

    def test(self, conn: Connection) -> TestResult:
        if conn.latest_file_id is None:
            return TestResult(
                False,
                "No file uploaded yet: upload one on the source page or by API, and it is checked then",
                waiting=True,
            )
        stored = db.session.get_one(SourceFile, conn.latest_file_id)
        try:
            sample = list(
                islice(iter_records(stored, conn.config, current_app.config["MAX_RECORD_BYTES"]), 100)
            )
        except ValueError as exc:
            return TestResult(False, f"{stored.filename}: {exc}")
        bad = next((row for row in sample if isinstance(row, Malformed)), None)
        if bad is not None:
            return TestResult(False, f"{stored.filename}: {bad}")
        if not sample:
            return TestResult(False, f"{stored.filename} holds no records")
        columns = sorted({key for row in sample for key in row})
        shown = ", ".join(columns[:8]) + ("…" if len(columns) > 8 else "")
        return TestResult(
            True,
            f"{stored.filename} parses as {detect_format(stored.filename, stored.format).upper()}: "
            f"fields {shown}",
        )

    def list_streams(self, conn: Connection) -> list[dict]:
        return [{"name": "uploads", "label": "Uploaded files"}]

    def read(
        self,
        conn: Connection,
        stream: str | None,
        state: dict | None,
        checkpoint: dict,
        full: bool,
        ctx: ReadContext,
    ) -> Batches:
        """The run's file, streamed in batches; resuming skips the rows already applied."""
        file_id = ctx.file_id or conn.latest_file_id
        stored = db.session.get(SourceFile, file_id) if file_id else None
        if stored is None:
            raise SourceError("No file to read: upload one first", retry=False)
        done_rows = checkpoint.get("rows", 0)
        rows, items, malformed, size = 0, [], [], 0
        try:
            for row in iter_records(stored, conn.config, ctx.max_record_bytes):
                rows += 1
                if rows <= done_rows:
                    continue
                if isinstance(row, Malformed):
                    malformed.append(str(row))
                else:
                    items.append(Incoming(row))
                    size += _size(row)
                if len(items) + len(malformed) >= ctx.batch_size or size >= ctx.batch_bytes:
                    yield Batch(items, {"rows": rows}, rejected=malformed)
                    items, malformed, size = [], [], 0
        except ValueError as exc:
            raise SourceError(f"{stored.filename}: {exc}", retry=False) from None
        yield Batch(items, {"rows": rows, "done": True}, rejected=malformed)

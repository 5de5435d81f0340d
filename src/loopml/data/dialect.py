"""How a CSV file is written: its delimiter and decimal mark (sniffed), and where its text
stops being valid in an encoding.

Sniffing reads the first lines only. Each candidate delimiter (``,`` ``;`` tab ``|``) splits
them with the csv module, so quoted fields (holding other delimiters, quotes or line breaks)
count as one field. A candidate that gives every record the same number of fields, more than
one, is consistent; the consistent one with the most fields wins, ties in the order above.
Without a consistent candidate (a file with a broken row), the one whose most common field
count covers the most records wins; a one-column file is read with ``,``.
"""

from __future__ import annotations

import codecs
import csv
import io
import re
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass
from typing import IO, Any, TypedDict

from loopml.errors import InvalidInputError

DELIMITERS = (",", ";", "\t", "|")


class CsvOptions(TypedDict, total=False):
    """How to read a CSV file (each also a flag of ``loopml data ingest``)."""

    delimiter: str | None  # one character; None: sniffed from , ; tab |
    encoding: str  # a Python codec name, utf-8 by default
    header: bool  # False: the first line is data, columns are column_1 .. column_n
    decimal: str | None  # "." or ","; None: "," for files not separated by commas that use it


SAMPLE_BYTES = 1 << 16  # what sniffing reads from the start of a file
_SAMPLE_RECORDS = 200
_DECIMAL_COMMA = re.compile(r"[+-]?[0-9]*,[0-9]+")
_DECIMAL_POINT = re.compile(r"[+-]?[0-9]*\.[0-9]+")


def check_options(
    delimiter: str | None,
    encoding: str,
    decimal: str | None,
    where: dict[str, Any] | None = None,
) -> None:
    """Refuse a delimiter, an encoding or a decimal mark that cannot work."""
    if delimiter is not None and (len(delimiter) != 1 or delimiter in '\r\n"'):
        raise InvalidInputError(
            f"invalid CSV delimiter {delimiter!r}",
            where={**(where or {}), "field": "delimiter"},
            hint="Use one character other than a quote or a line break, e.g. ',' or '\\t'",
        )
    if decimal not in (None, ".", ","):
        raise InvalidInputError(
            f"invalid decimal mark {decimal!r}",
            where={**(where or {}), "field": "decimal"},
            hint="Use '.' or ',' (or leave it out to sniff it)",
        )
    if decimal is not None and decimal == delimiter:
        raise InvalidInputError(
            f"the decimal mark {decimal!r} is also the delimiter",
            where={**(where or {}), "field": "decimal"},
            hint="Give a delimiter other than the decimal mark (e.g. ';' with ',')",
        )
    try:
        codecs.lookup(encoding)
    except LookupError as exc:
        raise InvalidInputError(
            f"unknown text encoding {encoding!r}",
            where={**(where or {}), "field": "encoding"},
            hint="Use a Python codec name such as 'utf-8' or 'latin-1'",
        ) from exc


def _records(sample: str, delimiter: str, complete: bool) -> list[list[str]]:
    """The non-blank records of ``sample``; the last one only when the sample is the file."""
    reader = csv.reader(io.StringIO(sample, newline=""), delimiter=delimiter, strict=False)
    records: list[list[str]] = []
    try:
        for fields in reader:
            if fields and fields != [""]:
                records.append(fields)
            if len(records) > _SAMPLE_RECORDS:
                return records[:_SAMPLE_RECORDS]
    except csv.Error:  # an unterminated quote at the end of a cut sample
        pass
    if not complete and records:
        records.pop()  # may be cut in the middle
    return records


def sniff_delimiter(sample: str, *, complete: bool) -> str:
    """The delimiter of the CSV text ``sample`` (the whole file when ``complete``)."""
    best, best_score = ",", (0, 0.0, 0)
    for rank, delimiter in enumerate(DELIMITERS):
        counts = [len(r) for r in _records(sample, delimiter, complete)]
        if not counts:
            continue
        width, covered = Counter(counts).most_common(1)[0]
        if width < 2:
            continue
        consistent = int(covered == len(counts))
        # consistent first, then the share of records with the common width, then the width
        score = (consistent, covered / len(counts), width if consistent else 0)
        if score > best_score or (score == best_score and rank < DELIMITERS.index(best)):
            best, best_score = delimiter, score
    return best


def sniff_decimal(sample: str, delimiter: str, *, header: bool, complete: bool) -> str:
    """``,`` when the fields of a file not separated by commas write numbers as ``1,5`` and
    none as ``1.5``; else ``.``."""
    if delimiter == ",":
        return "."
    records = _records(sample, delimiter, complete)[1 if header else 0 :]
    fields = [f.strip() for r in records for f in r]
    commas = any(_DECIMAL_COMMA.fullmatch(f) for f in fields)
    points = any(_DECIMAL_POINT.fullmatch(f) for f in fields)
    return "," if commas and not points else "."


def read_sample(stream: IO[bytes], encoding: str) -> tuple[str, bool]:
    """The first :data:`SAMPLE_BYTES` of ``stream`` as text (undecodable bytes replaced), and
    whether that is the whole stream."""
    raw = stream.read(SAMPLE_BYTES + 1)
    complete = len(raw) <= SAMPLE_BYTES
    decoder = codecs.getincrementaldecoder(encoding)("replace")
    return decoder.decode(raw[:SAMPLE_BYTES], final=complete), complete


@dataclass(frozen=True)
class DecodeError:
    """The first bytes that are not valid text in an encoding."""

    byte: int  # offset from the start of the (decompressed) file
    line: int  # 1-based
    bad: bytes
    reason: str


def first_decode_error(chunks: Iterable[bytes], encoding: str) -> DecodeError | None:
    """Where the bytes of ``chunks`` first stop being valid ``encoding``; None if nowhere."""
    decoder = codecs.getincrementaldecoder(encoding)("strict")
    offset, line = 0, 1
    for chunk in [*chunks, b""]:
        state = decoder.getstate()
        try:
            text = decoder.decode(chunk, final=not chunk)
        except UnicodeDecodeError as exc:
            pending = len(state[0])  # bytes the decoder held back from earlier chunks
            head = codecs.getincrementaldecoder(encoding)("replace")
            head.setstate(state)
            before = head.decode(chunk[: max(exc.start - pending, 0)])
            return DecodeError(
                byte=offset - pending + exc.start,
                line=line + before.count("\n"),
                bad=exc.object[exc.start : exc.end],
                reason=exc.reason,
            )
        line += text.count("\n")
        offset += len(chunk)
    return None


def first_bad_row(
    text: Iterable[str], delimiter: str, expected: int | None
) -> tuple[int, int, int, str] | None:
    """``(first line, expected, actual, text)`` of the first record of ``text`` whose field
    count is not ``expected`` (None: the first record's), found with the csv module."""
    reader = csv.reader(text, delimiter=delimiter, strict=False)
    end = 0
    width = expected
    for fields in reader:
        start, end = end + 1, reader.line_num
        if not fields:
            continue  # blank line: pyarrow skips it too
        if width is None:
            width = len(fields)
            continue
        if len(fields) != width:
            return start, width, len(fields), delimiter.join(fields)
    return None

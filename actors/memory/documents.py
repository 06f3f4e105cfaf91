"""Uploaded documents as text chunks for the memory store: PDF, XLSX, CSV, JSON, Markdown, text.

Plain library code, no bus. :func:`read_document` checks a file's type against both its
suffix and its content, takes its text out and cuts it into chunks of about
``Limits.chunk_chars`` characters, each with a location a person can find again
(``where``). Prose (PDF, text, Markdown) is cut at paragraphs, then sentences, then
words, and each chunk carries the end of the one before it in (``overlap_chars``); a
Markdown chunk begins with the heading it sits under (the cutting is :mod:`actors.memory.chunking`).
Spreadsheet and CSV rows become
``Header: value`` lines, JSON values ``$.path: value`` lines, packed whole.

Whatever is wrong with a file is a :class:`DocumentError` whose one-line message names
the file, the problem and the fix; no parser's exception gets out as anything else.
"""

from __future__ import annotations

import csv
import io
import json
import os
import re
import zipfile
from collections.abc import Callable, Iterable, Iterator, Sequence
from datetime import date, datetime, time
from typing import Final

import msgspec

from actors.memory.chunking import Unit, pack, prose, split
from schemas import DOCUMENT_SUFFIXES

SUFFIXES: Final = DOCUMENT_SUFFIXES

_REASON_CHARS: Final = 200  # a parser's own reason, as quoted in a message
# Bytes of workbook XML per character of text, generously: a workbook unpacking to more is a zip bomb.
_UNZIP_RATIO: Final = 50
_SNIFF_CHARS: Final = 32 << 10
_NAME: Final = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_FIX_PDF: Final = "open it and export or print it to a new PDF, then upload that"
_FIX_XLSX: Final = "open it in a spreadsheet app and save it as .xlsx again"


class DocumentError(Exception):
    """A document that cannot be stored; the message is one line naming the file, the problem and the fix."""


class Limits(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """How much of an upload is read, and how it is cut."""

    max_bytes: int = 20 << 20  # the upload itself
    # Text taken out: a zip bomb or a huge sheet stops here, with a clear error.
    max_chars: int = 2_000_000
    max_chunks: int = 4000
    chunk_chars: int = 800  # target chunk size, the carried overlap and a heading included
    overlap_chars: int = 100  # carried from one chunk into the next (prose only)

    def __post_init__(self) -> None:
        least = {"max_bytes": 1, "max_chars": 1, "max_chunks": 1, "chunk_chars": 20}
        for field, smallest in least.items():
            if getattr(self, field) < smallest:
                raise ValueError(f"{field} must be at least {smallest}")
        if not 0 <= self.overlap_chars <= self.chunk_chars // 2:
            raise ValueError("overlap_chars must be between 0 and half of chunk_chars")


class Chunk(msgspec.Struct, frozen=True, kw_only=True):
    index: int  # 0-based, in document order
    text: str
    where: str  # "page 3", "pages 3-4", "sheet Budget, rows 2-41", "rows 10-30", "lines 1-40", "$.items[3]"


_DEFAULTS: Final = Limits()


def read_document(name: str, data: bytes, limits: Limits = _DEFAULTS) -> list[Chunk]:
    """The text of the file ``name`` holding ``data``, in chunks in document order.

    Raises :class:`DocumentError` when it cannot be stored. The same name, bytes and
    limits always give the same chunks.
    """
    doc = _Doc(name, data, limits)
    suffix = os.path.splitext(name)[1].lower()
    reader = _READERS.get(suffix)
    if reader is None:
        kind = (
            f"files of type {_one_line(suffix, 20)!r}" if suffix else "files without a type suffix"
        )
        raise doc.error(
            f"{kind} cannot be stored; supported: {', '.join(SUFFIXES)}; save it as one of these"
        )
    if not data:
        raise doc.error("the file is empty; upload one with text in it")
    if len(data) > limits.max_bytes:
        raise doc.error(
            f"the file is {_size(len(data))}, over the limit of {_size(limits.max_bytes)}; "
            "split it into smaller files or raise the memory actor's documents.max_bytes"
        )
    pieces = reader(doc)
    if not pieces:
        raise doc.error("no text found in it; upload a file with text in it")
    if len(pieces) > limits.max_chunks:
        raise doc.error(
            f"it makes {len(pieces):,} chunks, over the limit of {limits.max_chunks:,}; "
            "split it into smaller files or raise the memory actor's documents.max_chunks"
        )
    return [Chunk(index=i, text=text, where=where) for i, (text, where) in enumerate(pieces)]


class _Doc:
    """The document being read: its label for messages, its bytes, the limits, the text taken so far."""

    def __init__(self, name: str, data: bytes, limits: Limits) -> None:
        self.label = _one_line(name, 120) or "the document"
        self.data = data
        self.limits = limits
        self.chars = 0

    def error(self, problem: str) -> DocumentError:
        return DocumentError(f"{self.label}: {problem}")

    def take(self, text: str) -> str:
        self.chars += len(text)
        if self.chars > self.limits.max_chars:
            raise self.error(
                f"more than {self.limits.max_chars:,} characters of text, the limit; "
                "split it into smaller files or raise the memory actor's documents.max_chars"
            )
        return text


_Pieces = list[tuple[str, str]]  # (text, where) of each chunk


# -- text --------------------------------------------------------------------------------------------


def _one_line(text: str, limit: int = _REASON_CHARS) -> str:
    flat = " ".join(text.split())
    return flat if len(flat) <= limit else flat[: limit - 1].rstrip() + "…"


def _reason(exc: BaseException) -> str:
    return _one_line(str(exc)) or type(exc).__name__


def _clean(line: str) -> str:
    return " ".join(line.replace("\x00", "").split())


def _size(n: int) -> str:
    return f"{n:,} bytes" if n < 1 << 20 else f"{n / (1 << 20):.1f} MiB"


def _span(noun: str, first: int, last: int) -> str:
    return f"{noun} {first}" if first == last else f"{noun}s {first}-{last}"


def _decode(doc: _Doc) -> str:
    if doc.data.startswith((b"\xff\xfe", b"\xfe\xff")):
        raise doc.error("the text is UTF-16, not UTF-8; re-save it as UTF-8 and upload it again")
    try:
        text = doc.data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise doc.error(
            f"not UTF-8 text (byte 0x{doc.data[exc.start]:02x} at offset {exc.start:,}); "
            "re-save it as UTF-8 and upload it again"
        ) from exc
    return text.replace("\x00", "")


# -- formats -----------------------------------------------------------------------------------------


def _read_text(doc: _Doc, markdown: bool) -> _Pieces:
    text = doc.take(_decode(doc)).replace("\r\n", "\n").replace("\r", "\n")
    lines = ((n, _clean(line)) for n, line in enumerate(text.split("\n"), start=1))
    return [
        (t, _span("line", a, b))
        for t, a, b in prose(lines, doc.limits.chunk_chars, doc.limits.overlap_chars, markdown)
    ]


def _read_pdf(doc: _Doc) -> _Pieces:
    try:
        from pypdf import PdfReader
    except ImportError as exc:
        raise doc.error(
            "reading PDFs needs pypdf; install it with pip install 'hex[memory]'"
        ) from exc
    if not doc.data.startswith(b"%PDF-"):
        raise doc.error(
            "not a PDF (it does not start with %PDF-); export it as a PDF, or give it its real type"
        )
    lines: list[tuple[int, str]] = []
    page_number = 0
    try:
        reader = PdfReader(io.BytesIO(doc.data), strict=False)
        if reader.is_encrypted:
            try:
                opened = bool(reader.decrypt(""))  # only an owner password: readable without one
            except Exception as exc:
                raise doc.error(
                    f"the PDF is encrypted ({_reason(exc)}); {_FIX_PDF} without a password"
                ) from exc
            if not opened:
                raise doc.error(
                    f"the PDF is encrypted with a password; {_FIX_PDF} without a password"
                )
        if not reader.pages:
            raise doc.error(f"the PDF has no pages; {_FIX_PDF}")
        for page_number, page in enumerate(reader.pages, start=1):
            lines.extend(
                (page_number, _clean(line)) for line in doc.take(page.extract_text()).splitlines()
            )
            lines.append((page_number, ""))  # a paragraph never runs on over a page break
    except DocumentError:
        raise
    except Exception as exc:
        on_page = f" on page {page_number}" if page_number else ""
        raise doc.error(f"the PDF is damaged{on_page} ({_reason(exc)}); {_FIX_PDF}") from exc
    if not any(line for _, line in lines):
        raise doc.error(
            "no extractable text (it looks scanned, or is only images); "
            "OCR it first (for example with ocrmypdf) and upload the result"
        )
    return [
        (t, _span("page", a, b))
        for t, a, b in prose(
            lines, doc.limits.chunk_chars, doc.limits.overlap_chars, markdown=False
        )
    ]


def _cell(value: object) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "TRUE" if value else "FALSE"
    if isinstance(value, float):
        return str(int(value)) if value.is_integer() and abs(value) < 1e15 else repr(value)
    if isinstance(value, datetime):
        return value.date().isoformat() if value.time() == time() else value.isoformat(sep=" ")
    if isinstance(value, date | time):
        return value.isoformat()
    return _clean(str(value))


def _rows(
    doc: _Doc, rows: Iterable[tuple[int, Sequence[object]]], column: Callable[[int], str]
) -> Iterator[Unit]:
    """Numbered rows as "Header: value; ..." lines; the first row with a value is the header."""
    header: list[str] | None = None
    header_row, data_rows = 0, 0
    for number, row in rows:
        cells = [_cell(value) for value in row]
        if not any(cells):
            continue
        if header is None:
            header, header_row = cells, number
            continue
        names = [
            header[i] if i < len(header) and header[i] else column(i) for i in range(len(cells))
        ]
        line = "; ".join(
            f"{name}: {value}" for name, value in zip(names, cells, strict=True) if value
        )
        yield from split([(number, doc.take(line))], doc.limits.chunk_chars)
        data_rows += 1
    if header is not None and not data_rows:  # a lone row is text too, not a header of nothing
        yield from split(
            [(header_row, doc.take("; ".join(c for c in header if c)))], doc.limits.chunk_chars
        )


def _read_csv(doc: _Doc) -> _Pieces:
    text = _decode(doc)
    sample = text[:_SNIFF_CHARS]
    try:
        dialect: type[csv.Dialect] = csv.Sniffer().sniff(
            sample[: sample.rfind("\n") + 1] or sample, ",;\t|"
        )
    except csv.Error:
        dialect = csv.excel
    reader = csv.reader(io.StringIO(text, newline=""), dialect)
    try:
        units = list(_rows(doc, enumerate(reader, start=1), lambda i: f"column {i + 1}"))
    except DocumentError:
        raise
    except Exception as exc:
        raise doc.error(
            f"the CSV cannot be read near line {reader.line_num:,} ({_reason(exc)}); "
            "fix that line or export the CSV again"
        ) from exc
    return [(t, _span("row", a, b)) for t, a, b in pack(units, doc.limits.chunk_chars, 0, "\n")]


def _read_xlsx(doc: _Doc) -> _Pieces:
    try:
        from openpyxl import load_workbook
        from openpyxl.utils import get_column_letter
    except ImportError as exc:
        raise doc.error(
            "reading workbooks needs openpyxl; install it with pip install 'hex[memory]'"
        ) from exc
    if doc.data.startswith(b"\xd0\xcf\x11\xe0"):
        raise doc.error(
            "an old .xls or a password-protected workbook, not an .xlsx; "
            "open it in a spreadsheet app and save it as .xlsx without a password"
        )
    if not doc.data.startswith(b"PK\x03\x04"):
        raise doc.error(f"not an .xlsx workbook (it is not a zip file); {_FIX_XLSX}")
    try:
        with zipfile.ZipFile(io.BytesIO(doc.data)) as archive:
            unpacked = sum(info.file_size for info in archive.infolist())
    except Exception as exc:
        raise doc.error(f"the workbook is damaged ({_reason(exc)}); {_FIX_XLSX}") from exc
    if unpacked > _UNZIP_RATIO * doc.limits.max_chars:
        raise doc.error(
            f"the workbook unpacks to {_size(unpacked)}, too much for documents.max_chars "
            f"({doc.limits.max_chars:,}); split it into smaller workbooks"
        )
    try:
        book = load_workbook(io.BytesIO(doc.data), read_only=True, data_only=True)
    except Exception as exc:
        raise doc.error(f"not a readable .xlsx workbook ({_reason(exc)}); {_FIX_XLSX}") from exc
    pieces: _Pieces = []
    try:
        for sheet in book.worksheets:
            sheet.reset_dimensions()  # trust the rows, not the size a writer declared
            title = _one_line(str(sheet.title), 100)
            rows = enumerate(sheet.iter_rows(values_only=True), start=1)
            units = _rows(doc, rows, lambda i: f"column {get_column_letter(i + 1)}")
            pieces += [
                (t, f"sheet {title}, {_span('row', a, b)}")
                for t, a, b in pack(units, doc.limits.chunk_chars, 0, "\n")
            ]
    except DocumentError:
        raise
    except Exception as exc:
        raise doc.error(f"the workbook is damaged ({_reason(exc)}); {_FIX_XLSX}") from exc
    finally:
        book.close()
    return pieces


def _key(key: str) -> str:
    return f".{key}" if _NAME.fullmatch(key) else f"[{json.dumps(key, ensure_ascii=False)}]"


def _leaves(value: object) -> Iterator[tuple[str, str]]:
    """(path, value) of every scalar, in document order; without recursion, so any depth is fine."""
    stack: list[tuple[str, object]] = [("$", value)]
    while stack:
        path, node = stack.pop()
        if isinstance(node, dict):
            stack.extend((path + _key(str(k)), v) for k, v in reversed(node.items()))
        elif isinstance(node, list):
            stack.extend((f"{path}[{i}]", v) for i, v in reversed(list(enumerate(node))))
        elif isinstance(node, str):
            if text := _clean(node):
                yield path, text
        else:
            yield path, json.dumps(node)


def _read_json(doc: _Doc) -> _Pieces:
    text = _decode(doc)
    try:
        value = json.loads(text)
    except json.JSONDecodeError as exc:
        raise doc.error(
            f"not valid JSON ({_reason(exc)}); fix it there and upload it again"
        ) from exc
    except RecursionError as exc:
        raise doc.error(
            "the JSON is nested too deeply to read; flatten it and upload it again"
        ) from exc
    except Exception as exc:
        raise doc.error(
            f"the JSON cannot be read ({_reason(exc)}); fix it and upload it again"
        ) from exc
    paths: list[str] = []
    units: list[Unit] = []
    for path, leaf in _leaves(value):
        units += split([(len(paths), doc.take(f"{path}: {leaf}"))], doc.limits.chunk_chars)
        paths.append(path)
    return [(t, paths[a]) for t, a, _ in pack(units, doc.limits.chunk_chars, 0, "\n")]


_READERS: Final[dict[str, Callable[[_Doc], _Pieces]]] = {
    ".pdf": _read_pdf,
    ".xlsx": _read_xlsx,
    ".txt": lambda doc: _read_text(doc, markdown=False),
    ".md": lambda doc: _read_text(doc, markdown=True),
    ".json": _read_json,
    ".csv": _read_csv,
}

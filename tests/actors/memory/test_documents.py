"""Uploaded documents as chunks: real files of every type, every refusal, and the chunker's promises."""

from __future__ import annotations

import io
import itertools
import json
import random
import re
import zipfile
from collections.abc import Callable
from datetime import datetime
from typing import Any

import msgspec
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from openpyxl import Workbook
from pypdf import PdfWriter
from reportlab.pdfgen import canvas

from actors.memory.documents import SUFFIXES, Chunk, DocumentError, Limits, read_document

SMALL = Limits(chunk_chars=200, overlap_chars=40)


def make_pdf(pages: list[list[str]], **options: object) -> bytes:
    out = io.BytesIO()
    pdf = canvas.Canvas(out, **options)
    for lines in pages:
        for n, line in enumerate(lines):
            pdf.drawString(50, 800 - 14 * n, line)
        pdf.showPage()
    pdf.save()
    return out.getvalue()


def reencrypt(pdf: bytes, *, user: str, owner: str) -> bytes:
    writer = PdfWriter(clone_from=io.BytesIO(pdf))
    writer.encrypt(user_password=user, owner_password=owner, algorithm="RC4-128")
    out = io.BytesIO()
    writer.write(out)
    return out.getvalue()


def image_only_pdf() -> bytes:
    out = io.BytesIO()
    pdf = canvas.Canvas(out)
    pdf.rect(100, 100, 200, 300, fill=1)
    pdf.showPage()
    pdf.save()
    return out.getvalue()


def make_xlsx() -> bytes:
    book = Workbook()
    plants = book.active
    assert plants is not None
    plants.title = "Plants"
    plants.append(["Plant", "Water every (days)", "Note"])
    plants.append(["Monstera", 7, None])
    plants.append([None, None, None])
    plants.append(["Cactus", 21.0, "south  window"])
    plants.append(["Fern", 2.5, None, "extra"])
    budget = book.create_sheet("Budget")
    budget["A2"], budget["B2"] = "Item", "Cost"
    budget.append(["Boiler service", 120])
    budget.append(["Paid on", datetime(2026, 3, 2)])
    book.create_sheet("Empty")
    out = io.BytesIO()
    book.save(out)
    return out.getvalue()


def not_a_workbook() -> bytes:
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w") as archive:
        archive.writestr("hello.txt", "hello")
    return out.getvalue()


def texts(chunks: list[Chunk]) -> str:
    return "\n".join(c.text for c in chunks)


def line_span(where: str) -> tuple[int, int]:
    found = re.fullmatch(r"lines? (\d+)(?:-(\d+))?", where)
    assert found, where
    return int(found[1]), int(found[2] or found[1])


PAGES = [
    ["The Thermaflow 3000 heats the whole house.", "It was installed in March 2024."],
    [
        "To reset the boiler, hold the red button for ten seconds.",
        "The light blinks green when it is done.",
    ],
    ["Call the engineer if the pressure drops below one bar.", "Their number is on the fridge."],
]


# -- PDF ---------------------------------------------------------------------------------------------


def test_pdf_text_is_read_page_by_page_and_chunks_name_their_pages() -> None:
    pdf = make_pdf(PAGES)
    whole = read_document("manual.pdf", pdf)
    assert [c.where for c in whole] == ["pages 1-3"]
    assert all(line in whole[0].text for page in PAGES for line in page)

    chunks = read_document("Manual.PDF", pdf, Limits(chunk_chars=120, overlap_chars=30))
    assert [c.index for c in chunks] == list(range(len(chunks)))
    for number, page in enumerate(PAGES, start=1):
        holding = [c for c in chunks if page[0] in c.text]
        assert [c.where for c in holding] == [f"page {number}"]
    assert "red button" in next(c for c in chunks if c.where == "page 2").text


def test_pdf_with_only_an_owner_password_is_read_but_a_user_password_is_refused() -> None:
    pdf = make_pdf(PAGES)
    readable = read_document("locked.pdf", reencrypt(pdf, user="", owner="owner"))
    assert "red button" in texts(readable)
    with pytest.raises(DocumentError, match="encrypted with a password"):
        read_document("locked.pdf", reencrypt(pdf, user="secret", owner="owner"))


# -- XLSX --------------------------------------------------------------------------------------------


def test_workbook_rows_become_header_value_lines_per_sheet_with_row_numbers() -> None:
    chunks = read_document("house.xlsx", make_xlsx())
    assert [(c.where, c.text.splitlines()) for c in chunks] == [
        (
            "sheet Plants, rows 2-5",
            [
                "Plant: Monstera; Water every (days): 7",
                "Plant: Cactus; Water every (days): 21; Note: south window",
                "Plant: Fern; Water every (days): 2.5; column D: extra",
            ],
        ),
        (
            "sheet Budget, rows 3-4",
            ["Item: Boiler service; Cost: 120", "Item: Paid on; Cost: 2026-03-02"],
        ),
    ]


def test_workbook_rows_are_grouped_into_chunks_that_never_cross_a_sheet() -> None:
    book = Workbook()
    sheet = book.active
    assert sheet is not None
    sheet.title = "Log"
    sheet.append(["Day", "Entry"])
    for day in range(1, 41):
        sheet.append([day, f"watered the plants and fed the cat, entry {day}"])
    book.create_sheet("Notes").append(["only one row here"])
    out = io.BytesIO()
    book.save(out)
    chunks = read_document("log.xlsx", out.getvalue(), Limits(chunk_chars=300, overlap_chars=0))
    log = [c for c in chunks if c.where.startswith("sheet Log")]
    assert len(log) > 3 and all(len(c.text) <= 300 for c in log)
    assert log[0].where.startswith("sheet Log, rows 2-") and log[-1].where.endswith("-41")
    assert sum(len(c.text.splitlines()) for c in log) == 40
    assert chunks[-1].where == "sheet Notes, row 1" and chunks[-1].text == "only one row here"


# -- CSV ---------------------------------------------------------------------------------------------


def test_csv_rows_keep_quoted_commas_and_count_the_header_as_row_one() -> None:
    data = b'name,note,phone\r\nAnna,"likes tea, and coffee",0123\r\n\r\n"Bob ""B""",,456\r\n'
    [chunk] = read_document("people.csv", data)
    assert chunk.where == "rows 2-4"
    assert chunk.text.splitlines() == [
        "name: Anna; note: likes tea, and coffee; phone: 0123",
        'name: Bob "B"; phone: 456',
    ]


def test_csv_dialect_is_sniffed_so_semicolons_work_and_one_column_falls_back() -> None:
    [semi] = read_document(
        "birthdays.csv",
        "\ufeffname;date;note\nGran;12 May;likes roses, tulips\nRob;3 June;\n".encode(),
    )
    assert semi.text.splitlines() == [
        "name: Gran; date: 12 May; note: likes roses, tulips",
        "name: Rob; date: 3 June",
    ]
    [single] = read_document("list.csv", b"item\nmilk\neggs\n")
    assert (single.text, single.where) == ("item: milk\nitem: eggs", "rows 2-3")


# -- JSON --------------------------------------------------------------------------------------------


def test_json_is_flattened_to_paths_and_chunks_start_where_their_first_value_is() -> None:
    value = {
        "home": {
            "wifi": {"name": "Hexnet", "hint": "the dog's\nname"},
            "rooms": ["kitchen", "garage", {}],
        },
        "count": 2,
        "ok": True,
        "none": None,
        "odd key": {"x": 1.5},
    }
    [whole] = read_document("home.json", json.dumps(value, indent=2).encode())
    assert whole.where == "$.home.wifi.name"
    assert whole.text.splitlines() == [
        "$.home.wifi.name: Hexnet",
        "$.home.wifi.hint: the dog's name",
        "$.home.rooms[0]: kitchen",
        "$.home.rooms[1]: garage",
        "$.count: 2",
        "$.ok: true",
        "$.none: null",
        '$["odd key"].x: 1.5',
    ]
    chunks = read_document(
        "home.json", json.dumps(value).encode(), Limits(chunk_chars=60, overlap_chars=0)
    )
    assert len(chunks) > 2
    assert all(c.where == c.text.split(": ", 1)[0] for c in chunks)
    assert read_document("n.json", b"42")[0].text == "$: 42"


# -- text and Markdown -------------------------------------------------------------------------------

LONG = " ".join(f"Sentence number {i} talks about the garden." for i in range(30))


def test_text_paragraphs_are_packed_and_a_long_one_is_cut_at_sentence_ends_with_overlap() -> None:
    data = f"First paragraph about apples.\n\nSecond   paragraph\tabout pears.\n\n{LONG}\n".encode()
    chunks = read_document("notes.txt", data, SMALL)
    assert chunks[0].text.startswith(
        "First paragraph about apples.\n\nSecond paragraph about pears.\n\nSentence"
    )
    assert chunks[0].where == "lines 1-5"
    assert all(c.where == "line 5" for c in chunks[1:])
    for before, after in itertools.pairwise(chunks[1:]):
        assert before.text.endswith("garden.") and len(after.text) <= SMALL.chunk_chars
        carried = " ".join(after.text.split()[:3])
        assert carried in before.text[-SMALL.overlap_chars - 10 :]
    without = read_document("notes.txt", data, Limits(chunk_chars=200, overlap_chars=0))
    assert texts(without).split() == data.decode().split()


def test_markdown_chunks_keep_the_heading_they_sit_under() -> None:
    data = "\n".join(
        [
            "# Guide",
            "",
            "Intro.",
            "",
            "## Setup",
            "",
            LONG,
            "",
            "```",
            "# not a heading",
            "```",
            "",
            "## Use",
            "",
            "Run it daily.",
        ]
    ).encode()
    chunks = read_document("guide.md", data, SMALL)
    assert chunks[0].text.startswith("# Guide\n\nIntro.\n\n## Setup\n\nSentence number 0")
    setup = [c for c in chunks[1:] if "garden" in c.text or "# not a heading" in c.text]
    assert setup and all(c.text.startswith("## Setup\n\n") for c in setup)
    assert chunks[-1].text == "## Use\n\nRun it daily." and chunks[-1].where == "lines 13-15"
    last_lines = [c.text.splitlines()[-1] for c in chunks]
    assert not any(re.fullmatch(r"#+ .*", line) for line in last_lines)  # no heading left dangling


def test_text_is_cleaned_and_a_word_longer_than_a_chunk_is_cut_as_a_last_resort() -> None:
    [chunk] = read_document("nul.txt", b"\xef\xbb\xbfa\x00b  c\r\nd\te\r\r")
    assert (chunk.text, chunk.where) == ("ab c\nd e", "lines 1-2")
    word = "x" * 500
    chunks = read_document(
        "blob.txt", f"start {word} end".encode(), Limits(chunk_chars=100, overlap_chars=0)
    )
    assert "".join(texts(chunks).split()) == f"start{word}end"
    assert all(len(c.text) <= 100 for c in chunks)


def test_same_bytes_give_the_same_chunks() -> None:
    for name, data in (
        ("a.pdf", make_pdf(PAGES)),
        ("a.xlsx", make_xlsx()),
        ("a.md", LONG.encode()),
    ):
        assert read_document(name, data, SMALL) == read_document(name, data, SMALL)


# -- refusals ----------------------------------------------------------------------------------------

NOISE = random.Random(7).randbytes(3000)
BIG_CSV = b"name,note\n" + b"".join(b"person %d,a note about them\n" % i for i in range(200))

REFUSED: list[tuple[str, Callable[[], bytes], Limits, str]] = [
    (
        "letter.docx",
        lambda: b"PK\x03\x04 not really",
        Limits(),
        "supported: .pdf, .xlsx, .txt, .md, .json, .csv",
    ),
    ("README", lambda: b"hello", Limits(), "without a type suffix"),
    ("notes.txt", lambda: b"", Limits(), "the file is empty"),
    (
        "big.txt",
        lambda: b"lorem ipsum " * 100,
        Limits(max_bytes=1000),
        "1,200 bytes, over the limit of 1,000 bytes",
    ),
    ("broken.pdf", lambda: make_pdf(PAGES)[:400], Limits(), "the PDF is damaged"),
    ("noise.pdf", lambda: b"%PDF-1.7\n" + NOISE, Limits(), "the PDF is damaged"),
    ("photo.pdf", lambda: NOISE, Limits(), "not a PDF"),
    (
        "secret.pdf",
        lambda: make_pdf(PAGES, encrypt="secret"),
        Limits(),
        "encrypted with a password",
    ),
    ("scan.pdf", image_only_pdf, Limits(), "OCR it first"),
    ("noise.xlsx", lambda: NOISE, Limits(), "not an .xlsx workbook"),
    ("zipped-noise.xlsx", lambda: b"PK\x03\x04" + NOISE, Limits(), "the workbook is damaged"),
    ("archive.xlsx", not_a_workbook, Limits(), "not a readable .xlsx workbook"),
    ("old.xlsx", lambda: b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1" + NOISE, Limits(), "old .xls"),
    ("bomb.xlsx", make_xlsx, Limits(max_chars=100), "unpacks to"),
    (
        "café.txt",
        lambda: "Crème brûlée for dessert".encode("latin-1"),
        Limits(),
        "not UTF-8 text (byte 0xe8",
    ),
    ("wide.txt", lambda: "hello".encode("utf-16"), Limits(), "UTF-16"),
    ("bad.json", lambda: b'{"a": 1,\n "b": }', Limits(), "line 2 column 7"),
    ("deep.json", lambda: b"[" * 100_000, Limits(), "JSON"),
    ("huge.csv", lambda: BIG_CSV, Limits(max_chars=1000), "more than 1,000 characters"),
    ("huge.md", lambda: LONG.encode(), Limits(max_chars=1000), "more than 1,000 characters"),
    (
        "many.txt",
        lambda: LONG.encode(),
        Limits(max_chunks=3, chunk_chars=100, overlap_chars=0),
        "over the limit of 3",
    ),
    ("blank.md", lambda: b"  \n\n\t\n\x00", Limits(), "no text found"),
    ("empty.json", lambda: b'{"a": {}, "b": [], "c": "  "}', Limits(), "no text found"),
    ("header-only.csv", lambda: b",,\n,,\n", Limits(), "no text found"),
]


@pytest.mark.parametrize(
    ("name", "make", "limits", "problem"), REFUSED, ids=[r[0] for r in REFUSED]
)
def test_a_bad_document_is_refused_in_one_line_naming_the_file_and_problem(
    name: str, make: Callable[[], bytes], limits: Limits, problem: str
) -> None:
    with pytest.raises(DocumentError) as refused:
        read_document(name, make(), limits)
    message = str(refused.value)
    assert message.startswith(f"{name}: ") and problem in message and "\n" not in message, message
    assert len(message) < 400 and ";" in message  # a fix follows the problem


def test_limits_are_checked_when_made_and_when_decoded() -> None:
    with pytest.raises(ValueError, match="overlap_chars"):
        Limits(chunk_chars=100, overlap_chars=60)
    with pytest.raises(msgspec.ValidationError, match="chunk_chars must be at least 20"):
        msgspec.json.decode(b'{"chunk_chars": 5}', type=Limits)
    with pytest.raises(msgspec.ValidationError, match="unknown field"):
        msgspec.json.decode(b'{"max_byte": 5}', type=Limits)


# -- properties --------------------------------------------------------------------------------------

words = st.text(
    st.characters(codec="utf-8", exclude_categories=("Cs", "Z", "Cc")), min_size=1, max_size=15
)
gaps = st.sampled_from(
    [" ", "  ", "\t", "\n", "\n\n", "\r\n", "\r\n\r\n", ". ", "? ", "\n \n", "\u2028", "\x00"]
)
documents = st.lists(st.tuples(words, gaps), max_size=300).map(
    lambda pairs: "".join(w + g for w, g in pairs)
)
any_text = st.one_of(documents, st.text(max_size=1500))


@st.composite
def limits(draw: st.DrawFn) -> Limits:
    chunk_chars = draw(st.integers(40, 300))
    return Limits(chunk_chars=chunk_chars, overlap_chars=draw(st.integers(0, chunk_chars // 2)))


def expected_words(text: str) -> list[str]:
    return text.encode().decode("utf-8-sig").replace("\x00", "").split()


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(any_text, limits())
def test_text_chunks_are_bounded_in_order_and_keep_every_word(text: str, limits: Limits) -> None:
    wanted = expected_words(text)
    if not wanted:
        with pytest.raises(DocumentError, match=r"no text found|the file is empty"):
            read_document("t.txt", text.encode(), limits)
        return
    chunks = read_document("t.txt", text.encode(), limits)
    assert [c.index for c in chunks] == list(range(len(chunks)))
    assert all(
        c.text and c.text == c.text.strip() and len(c.text) <= limits.chunk_chars for c in chunks
    )
    starts = [line_span(c.where)[0] for c in chunks]
    assert starts == sorted(starts)
    found = {w for c in chunks for w in c.text.split()}
    whole = limits.chunk_chars // 2  # a longer word may be cut, as a last resort
    assert [w for w in wanted if len(w) <= whole and w not in found] == []


@settings(max_examples=100, deadline=None)
@given(documents, st.integers(40, 300))
def test_without_overlap_text_chunks_hold_the_words_exactly_once_in_order(
    text: str, chunk_chars: int
) -> None:
    wanted = expected_words(text)
    if not wanted:
        return
    chunks = read_document("t.txt", text.encode(), Limits(chunk_chars=chunk_chars, overlap_chars=0))
    got = [w for c in chunks for w in c.text.split()]
    if all(len(w) <= chunk_chars // 2 for w in wanted):
        assert got == wanted
    else:  # a word longer than a chunk is cut, as a last resort
        assert "".join(got) == "".join(wanted)


def mutated(draw: Callable[..., Any], data: bytes) -> bytes:
    out = bytearray(data[: draw(st.integers(len(data) // 2, len(data)))])
    for _ in range(draw(st.integers(0, 8))):
        out[draw(st.integers(0, len(out) - 1))] = draw(st.integers(0, 255))
    return bytes(out)


SAMPLES = {
    ".pdf": make_pdf(PAGES),
    ".xlsx": make_xlsx(),
    ".json": b'{"a": [1, "two", {"b": null}]}',
    ".csv": b"a,b\n1,2\n",
    ".md": b"# H\n\ntext",
    ".txt": b"plain text",
}


@settings(max_examples=60, deadline=None)
@given(st.sampled_from(SUFFIXES), st.data())
def test_damaged_files_give_chunks_or_a_document_error_and_nothing_else(
    suffix: str, data: st.DataObject
) -> None:
    damaged = mutated(data.draw, SAMPLES[suffix])
    try:
        chunks = read_document(f"file{suffix}", damaged)
    except DocumentError as refused:
        assert "\n" not in str(refused)
    else:
        assert all(c.text.strip() for c in chunks)

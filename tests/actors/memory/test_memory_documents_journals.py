"""The memory actor's documents (chunks with provenance) and journal files people can edit.

Through the supervisor, with real DuckDB, the packaged embedding model, real files and real
sockets.
"""

from __future__ import annotations

import asyncio
import re
import time
from pathlib import Path

import pytest

from hexbus.bus import BusClient
from schemas import ChatMessage, Fact, ReplyMeta
from tests.support.harness import HexFactory, poll_for
from tests.support.memory import add, search
from tests.support.memory_process import export, journal_files, start

pytestmark = [pytest.mark.process, pytest.mark.slow]


# -- documents ------------------------------------------------------------------------------------


def make_pdf(path: Path, pages: list[str]) -> None:
    from reportlab.lib.pagesizes import A4
    from reportlab.pdfgen import canvas

    pdf = canvas.Canvas(str(path), pagesize=A4)
    for text in pages:
        y = 800
        for line in re.findall(r".{1,80}(?:\s|$)", text):
            pdf.drawString(50, y, line.strip())
            y -= 14
        pdf.showPage()
    pdf.save()


def test_documents_become_chunks_with_provenance_and_bad_ones_store_nothing(
    hex_factory: HexFactory, tmp_path: Path
) -> None:
    from openpyxl import Workbook

    hx = start(hex_factory)
    manual = tmp_path / "boiler-manual.pdf"
    make_pdf(
        manual,
        [
            "Welcome to the Thermaflow 3000 boiler manual.",
            "To reset the boiler, hold the red button for ten seconds until the light blinks green.",
        ],
    )
    out = hx.cli("memory", "upload", str(manual), "--tags", "home")
    assert out.returncode == 0 and out.stdout.startswith("stored: m_") and "chunks" in out.stdout, (
        out
    )
    # Piped, the embedding's progress is plain lines on stderr, the last one complete
    chunks = re.search(r"chunks (\d+)", out.stdout)
    assert chunks is not None and out.stderr.splitlines()[-1].startswith(
        f"embedding boiler-manual.pdf: {chunks[1]}/{chunks[1]} chunks (100%)"
    ), out.stderr
    hit = search(hx, "how do I restart the heating?")[0]
    assert hit.kind == "document" and "red button" in hit.text
    assert re.fullmatch(r"boiler-manual\.pdf #1 \(pages? (1-)?2\)", hit.document) and hit.tags == (
        "home",
    )

    book = Workbook()
    sheet = book.active
    sheet.title = "Plants"
    sheet.append(["Plant", "Water every"])
    sheet.append(["Monstera", "7 days"])
    sheet.append(["Cactus", "21 days"])
    book.save(tmp_path / "plants.xlsx")
    for name, data in (
        ("notes.md", b"# Garage\n\nThe spare key hangs behind the calendar.\n"),
        ("todo.txt", b"Call the plumber about the dripping tap.\n"),
        ("birthdays.csv", b"name,date\nGran,12 May\nUncle Rob,3 June\n"),
        ("wifi.json", b'{"network": {"name": "Hexnet", "password_hint": "the dog\'s name"}}'),
    ):
        (tmp_path / name).write_bytes(data)
    for name in ("plants.xlsx", "notes.md", "todo.txt", "birthdays.csv", "wifi.json"):
        done = hx.cli("memory", "upload", str(tmp_path / name))
        assert done.returncode == 0 and done.stdout.startswith("stored:"), (name, done)
    assert "Cactus" in search(hx, "how often does the cactus need water")[0].text
    assert "Gran" in search(hx, "when is Gran's birthday")[0].text
    assert "Hexnet" in search(hx, "wifi password hint")[0].text
    assert "spare key" in search(hx, "where is the spare key")[0].text

    before = len(export(hx))
    broken = tmp_path / "broken.pdf"
    broken.write_bytes(manual.read_bytes()[:400])
    refused = hx.cli("memory", "upload", str(broken))
    assert (
        refused.returncode == 1 and "broken.pdf" in refused.stderr and "refused" in refused.stderr
    )
    assert len(refused.stderr.strip().splitlines()) == 1
    (tmp_path / "letter.docx").write_bytes(b"PK\x03\x04 not really")
    wrong = hx.cli("memory", "upload", str(tmp_path / "letter.docx"))
    assert wrong.returncode == 1 and ".pdf" in wrong.stderr  # it lists what is supported
    assert len(export(hx)) == before  # nothing half-stored


def test_a_document_over_the_size_limit_is_refused_with_the_limit(
    hex_factory: HexFactory, tmp_path: Path
) -> None:
    hx = start(hex_factory, extra="[actors.memory.config.documents]\nmax_bytes = 1000\n")
    big = tmp_path / "big.txt"
    big.write_text("lorem ipsum dolor sit amet " * 100)
    out = hx.cli("memory", "upload", str(big))
    assert (
        out.returncode == 1 and "big.txt" in out.stderr and "1000" in out.stderr.replace(",", "")
    ), out.stderr
    assert export(hx) == []


# -- journals --------------------------------------------------------------------------------------


def test_notable_moments_become_journal_files_that_people_can_edit_add_and_delete(
    hex_factory: HexFactory,
) -> None:
    hx = start(hex_factory, journal_scan_s=0.3)

    async def moment() -> None:
        client = BusClient(hx.endpoints, "chatter")
        client.start()
        message = await client.publish_durable(
            ChatMessage(
                platform="console",
                person_id="ana",
                display_name="Ana",
                channel="c1",
                text="I passed my driving test today!!",
            ),
            key="console",
        )
        await client.publish_durable(
            ReplyMeta(
                reply_to=message.id,
                person_id="ana",
                channel="c1",
                emotion="excited",
                remember=True,
                importance=0.9,
                tags=("milestone", "driving"),
                facts=(Fact(text="Ana passed her driving test", quote="passed my driving test"),),
            )
        )
        await client.publish_durable(
            ReplyMeta(reply_to="small-talk", person_id="ana", channel="c1", importance=0.2)
        )
        assert await client.flush(10)
        await client.close()

    asyncio.run(moment())
    files = poll_for(lambda: journal_files(hx) or None, 30, what="a journal file for the moment")
    assert len(files) == 1  # small talk is not journaled
    ((relpath, text),) = files.items()
    assert re.fullmatch(r"\d{4}/\d{2}/\d{2}/\d{6}-[a-z0-9-]+-m_[0-9a-f]{16}\.md", relpath), relpath
    assert text.startswith("---\n") and "importance: 0.9" in text and "emotion: excited" in text
    assert "I passed my driving test today!!" in text and "- driving" in text
    journal = poll_for(
        lambda: [
            h for h in search(hx, "driving test", person_id="ana", k=10) if h.kind == "journal"
        ],
        20,
        what="the journal entry to be searchable",
    )[0]

    path = hx.data_dir / "actors" / "memory" / "journals" / relpath
    path.write_text(
        text.replace("I passed my driving test today!!", "I passed my motorbike licence today!!")
    )
    poll_for(
        lambda: any(
            "motorbike" in h.text
            for h in search(hx, "motorbike licence", person_id="ana", k=10)
            if h.id == journal.id
        ),
        20,
        what="the edited journal file to be re-indexed",
    )

    mine = path.parent / "my-own-note.md"
    mine.write_text("Ana's favourite ice cream is pistachio, she told me at the fair.\n")
    poll_for(
        lambda: any(
            "pistachio" in h.text and h.kind == "journal"
            for h in search(hx, "ice cream flavour", k=10)
        ),
        20,
        what="a file a person added to be adopted",
    )

    path.unlink()
    poll_for(
        lambda: journal.id not in {r["id"] for r in export(hx)},
        20,
        what="the deleted file's memory to go",
    )

    adopted = next(r for r in export(hx) if "pistachio" in r["text"])
    out = hx.cli("memory", "forget", adopted["id"])
    assert out.returncode == 0 and "forgotten" in out.stdout
    assert not mine.exists()
    time.sleep(1.0)  # a few scans: a forgotten entry never comes back
    assert adopted["id"] not in {r["id"] for r in export(hx)}


def test_a_broken_journal_file_is_reported_and_its_memory_kept(hex_factory: HexFactory) -> None:
    hx = start(hex_factory, journal_scan_s=0.3)
    memory = add(
        hx, "The day Hex first met the whole Discord server", kind="journal", importance=0.8
    )
    files = poll_for(lambda: journal_files(hx) or None, 20, what="the journal file")
    ((relpath, _),) = files.items()
    (hx.data_dir / "actors" / "memory" / "journals" / relpath).write_text(
        "---\ntags: [unclosed\n---\nhalf an edit"
    )
    poll_for(
        lambda: "memory.journal_unreadable" in hx.log(), 20, what="the broken file to be reported"
    )
    assert memory in {r["id"] for r in export(hx)}
    assert hx.log().count("memory.journal_unreadable") == 1  # once, not every scan

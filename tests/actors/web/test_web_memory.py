"""The memory panel and the chat's history in a real browser against a real Hex: the web actor,
the memory actor (real DuckDB, the packaged embedding model) and the brain (the packaged model)
under the supervisor. An owner adds, searches (with each hit's score parts), approves a
suggestion, uploads a PDF, imports a history file, exports and forgets; a reply says which
memories went into it; a reload shows the conversation from memory; a guest is refused."""

from __future__ import annotations

import asyncio
import json
import tempfile
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import pytest
from websockets.sync.client import connect

from actors.web.auth import cookie_name
from hexbus.bus import BusClient
from schemas import Fact, ReplyMeta
from tests.actors.memory.test_documents import make_pdf
from tests.support.brain import brain_toml
from tests.support.harness import FAST_BUS, Hex, HexFactory, poll_for
from tests.support.memory import add, memory_config
from tests.support.web import artifact, chromium, page_of, web_toml

pytestmark = [pytest.mark.process, pytest.mark.slow]

WAIT_S = 60


def start(hex_factory: HexFactory) -> Hex:
    root = Path(tempfile.mkdtemp(prefix="hx", dir="/tmp"))
    brain = brain_toml(root, extra="metadata = false\nbudgets = { reply = 30 }").replace(
        "memory_timeout_s = 0.2", "memory_timeout_s = 10.0"
    )
    memory = memory_config(suggestions=True).replace(FAST_BUS, "")
    web = web_toml() + web_toml("guest", person_id="ana", owner=False)
    return hex_factory(brain + memory + web, root=root).start()


def until(page: Any, expression: str, timeout: float = WAIT_S) -> Any:
    return poll_for(lambda: page.evaluate(expression), timeout, interval=0.05, what=expression)


def report(page: Any, n: int) -> dict[str, Any]:
    """The n-th (1-based) report the panel received (changed, imported or refused)."""
    until(page, f"hex.memory.reports.length >= {n}")
    return dict(page.evaluate(f"hex.memory.reports[{n - 1}]"))


def search(page: Any, text: str) -> list[dict[str, Any]]:
    page.fill("#memory-query", text)
    n = page.evaluate("hex.memory.searches")
    page.click("#memory-search button[type=submit]")
    until(page, f"hex.memory.searches > {n} && hex.memory.query === {json.dumps(text)}")
    return list(page.evaluate("hex.memory.hits"))


def suggest(hx: Hex, text: str, quote: str, reply_to: str = "m-suggest") -> None:
    """What the brain's notes make of an exchange: a fact, waiting for approval."""

    async def send() -> None:
        client = BusClient(hx.endpoints, "notes")
        client.start()
        meta = ReplyMeta(
            reply_to=reply_to,
            person_id="owner",
            channel="owner/main",
            facts=(Fact(text=text, quote=quote),),
            remember=True,
            importance=0.6,
        )
        await client.publish_durable(meta)
        assert await client.flush(10), "the broker did not take the notes"
        await client.close()

    with ThreadPoolExecutor(1) as pool:  # Playwright's sync API keeps an event loop in this one
        pool.submit(asyncio.run, send()).result(30)


def test_the_owner_searches_adds_reviews_uploads_imports_and_forgets_and_a_guest_cannot(
    hex_factory: HexFactory, tmp_path: Path
) -> None:
    hx = start(hex_factory)
    with chromium() as browser:
        page = browser.new_page()
        page.on("dialog", lambda dialog: dialog.accept())  # the confirmations: yes
        page.goto(page_of(hx)["open"])
        page.wait_for_selector("#connection.up")
        page.click("#show-memory")

        # Add, then search: the hit comes with its score parts, drawn as bars.
        page.fill("#memory-add-text", "My beehives are on the balcony, three of them")
        page.fill("#memory-add-tags", "home, bees")
        page.click("#memory-add button[type=submit]")
        added = report(page, 1)
        assert added["action"] == "added", added
        bees = added["ids"][0]
        hits = poll_for(
            lambda: [h for h in search(page, "beehives") if h["id"] == bees], WAIT_S, what="hit"
        )
        hit = hits[0]
        assert hit["person_id"] == "owner" and hit["tags"] == ["home", "bees"]
        assert hit["parts"]["keyword"] > 0 and hit["parts"]["semantic"] > 0.3, hit["parts"]
        assert {"recency", "importance"} <= set(hit["parts"])
        shown = page.locator(f'#memory-hits li[data-id="{bees}"]')
        assert shown.locator(".part").count() == 4 and "semantic" in shown.inner_text()
        page.screenshot(path=artifact("memory-search.png"), full_page=True)

        # A suggestion from a conversation, with its quote: approved from the review list.
        suggest(hx, "Their sister Mira studies marine biology", "my sister Mira studies sea life")
        page.click("#memory-review-button")
        pending = page.locator("#memory-review li.pending")
        poll_for(lambda: pending.count() >= 1, WAIT_S, what="the suggestion in the review list")
        assert "sea life" in pending.first.inner_text()
        page.screenshot(path=artifact("memory-review.png"), full_page=True)
        pending.first.locator("button.approve").click()
        approved = report(page, 2)
        assert approved["action"] == "approved", approved
        mira = search(page, "Mira marine biology")
        assert mira and mira[0]["text"].startswith("Their sister Mira") and not mira[0]["pending"]

        # Edited: its text, importance and tags.
        item = page.locator(f'#memory-hits li[data-id="{mira[0]["id"]}"]')
        item.locator("button", has_text="Edit").click()
        item.locator("form.edit textarea").fill("Their sister Mira studies marine biology in Porto")
        item.locator("form.edit input[type=number]").fill("0.9")
        item.locator("form.edit input:not([type])").fill("family, porto")
        item.locator("form.edit button[type=submit]").click()
        edited = report(page, 3)
        assert edited["action"] == "edited", edited
        (now,) = [h for h in search(page, "Mira Porto") if h["id"] == mira[0]["id"]]
        assert now["text"].endswith("in Porto") and now["importance"] == 0.9
        assert now["tags"] == ["family", "porto"]

        # Another suggestion, rejected: it is gone.
        suggest(hx, "They hate olives", "ugh, olives are the worst", reply_to="m-olives")
        page.click("#memory-review-button")
        olives = page.locator("#memory-review li.pending", has_text="olives")
        poll_for(lambda: olives.count() == 1, WAIT_S, what="the second suggestion")
        olives.locator("button.reject").click()
        rejected = report(page, 4)
        assert rejected["action"] == "rejected", rejected
        assert not [h for h in search(page, "olives") if "olives" in h["text"]]

        # A PDF, uploaded with progress: its chunks are found by what they say.
        pdf = tmp_path / "allotment.pdf"
        pdf.write_bytes(make_pdf([["The allotment gate code is 4471.", "Water the leeks."]]))
        page.set_input_files("#memory-upload-file", str(pdf))
        page.click("#memory-upload button[type=submit]")
        stored = report(page, 5)
        assert stored["action"] == "stored" and stored["counts"]["chunks"] >= 1, stored
        assert page.evaluate("[...hex.memory.progress.values()].some(p => p.unit === 'chunks')")
        gate = search(page, "allotment gate code")
        assert gate and "4471" in gate[0]["text"] and gate[0]["kind"] == "document"
        # A file the memory cannot read is refused with the same reason as the CLI gives.
        exe = tmp_path / "setup.exe"
        exe.write_bytes(b"MZ\x90\x00")
        page.set_input_files("#memory-upload-file", str(exe))
        page.click("#memory-upload button[type=submit]")
        refused = report(page, 6)
        assert refused["op"] == "refused" and "supported: .pdf" in refused["text"], refused

        # A history file: good lines imported, the bad one named by its number.
        history = tmp_path / "old-chat.jsonl"
        lines = [
            {
                "id": f"o{i}",
                "conversation": "old",
                "speaker": "Owner",
                "person_id": "owner",
                "text": f"back in March we planted {fruit} trees",
                "timestamp": 1_740_000_000 + i,
            }
            for i, fruit in enumerate(("apple", "pear", "plum"))
        ]
        history.write_text("\n".join([*map(json.dumps, lines), "{not json"]) + "\n")
        page.set_input_files("#memory-import-file", str(history))
        page.click("#memory-import button[type=submit]")
        imported = report(page, 7)
        assert imported["op"] == "imported" and imported["counts"]["turns"] == 3, imported
        assert imported["bad_lines"] == 1 and imported["problems"][0].startswith("line 4:")
        # A WhatsApp export as the app writes it: read whole, its system line named.
        chat = tmp_path / "WhatsApp Chat with Ana.txt"
        chat.write_text(
            "12/24/23, 9:03\u202fPM - Messages and calls are end-to-end encrypted.\n"
            "12/24/23, 9:05\u202fPM - Ana: guess what\nI signed up for the pottery class\n"
            "12/24/23, 9:06\u202fPM - Owner: the Thursday one?\n"
        )
        page.set_input_files("#memory-import-file", str(chat))
        page.click("#memory-import button[type=submit]")
        whatsapp = report(page, 8)
        assert whatsapp["op"] == "imported" and whatsapp["counts"]["turns"] == 2, whatsapp
        assert whatsapp["problems"] == [
            "line 1: a system message, not a turn ('Messages and calls are end-to-end encrypted.')"
        ]

        # The export: every memory as JSON Lines, downloaded with the page's cookie.
        export = page.evaluate("fetch(`/memory/export?tab=${hex.tab}`).then(r => r.text())")
        exported = [json.loads(line) for line in export.splitlines()]
        assert {bees, mira[0]["id"]} <= {m["id"] for m in exported}

        # A reply names the memories in its prompt ("why Hex remembered this").
        page.fill("#input", "Do you remember where my beehives are?")
        page.press("#input", "Enter")
        until(page, "document.querySelectorAll('.msg.hex[data-status]').length >= 1", 120)
        page.click(".msg.hex .why-button")
        why = page.locator(".msg.hex .why li.hit")
        poll_for(lambda: why.count() >= 1, WAIT_S, what="the reply's memories")
        assert bees in why.evaluate_all("els => els.map(e => e.dataset.id)")
        # The line being answered is the conversation, not a memory of it.
        assert "where my beehives are" not in page.inner_text(".msg.hex .why")
        page.screenshot(path=artifact("memory-why.png"), full_page=True)

        # Forget, confirmed: gone from search.
        search(page, "beehives")
        page.locator(f'#memory-hits li[data-id="{bees}"] button.danger').click()
        forgotten = report(page, 9)
        assert forgotten["action"] == "forgotten" and bees in forgotten["ids"], forgotten
        assert bees not in [h["id"] for h in search(page, "beehives balcony")]

        # Reloaded (or on another machine): the conversation comes back from memory, with its
        # reply's "why".
        page.reload()
        page.wait_for_selector("#connection.up")
        until(page, "hex.history.pages >= 1", 30)
        past = page.locator(".msg.past")
        assert "beehives" in past.first.inner_text()
        assert page.locator(".msg.hex.past .why-button").count() == 1
        page.screenshot(path=artifact("history.png"), full_page=True)
        # The page's actor restarts: the tab reconnects and asks again, and nothing is doubled.
        shown = page.locator(".msg").count()
        pid = hx.pid("web")
        hx.command("restart", "web")
        hx.wait_restarted("web", pid)
        until(page, "hex.socket.readyState === 1 && hex.history.pages >= 2", 30)
        assert page.locator(".msg").count() == shown

    # A guest (the page's person is not an owner) is refused what is the owner's, and never
    # sees the summary of a conversation between other people.
    summary = add(hx, "Bo and Cy planned a surprise party for Dee", kind="summary")
    guest = page_of(hx, "guest")
    port = int(guest["url"].rsplit(":", 1)[1].strip("/"))
    headers = {"Cookie": f"{cookie_name(port)}={guest['token']}"}
    ws = guest["url"].replace("http://", "ws://") + "ws"
    with connect(ws, additional_headers=headers, open_timeout=5) as tab:
        hello = json.loads(tab.recv(5))
        assert hello["t"] == "hello" and not hello["owner"]
        for n, ask in enumerate(
            (
                {"op": "review"},
                {"op": "approve", "id": mira[0]["id"]},
                {"op": "edit", "id": mira[0]["id"], "text": "changed"},
                {"op": "forget", "ids": [mira[0]["id"]]},  # the owner's, not hers
                {"op": "search", "text": "Mira", "person": "owner"},
            )
        ):
            tab.send(json.dumps({"t": "memory", "ref": f"g{n}", **ask}))
            answer = _answer(tab, f"g{n}")
            assert answer["op"] == "refused", (ask, answer)
        tab.send(json.dumps({"t": "memory", "ref": "mine", "op": "search", "text": "Mira"}))
        seen = _answer(tab, "mine")["hits"]
        assert all(h["person_id"] in ("ana", "") for h in seen), seen  # never the owner's
        tab.send(json.dumps({"t": "memory", "ref": "party", "op": "search", "text": "party"}))
        assert summary not in [h["id"] for h in _answer(tab, "party")["hits"]]
        tab.send(json.dumps({"t": "memory", "ref": "ids", "op": "why", "ids": [summary]}))
        assert _answer(tab, "ids")["hits"] == []
        tab.send(json.dumps({"t": "memory", "ref": "k", "op": "search", "text": "", "k": 1e999}))
        assert _answer(tab, "k")["op"] == "hits"  # an absurd number is clamped, not a crash
        with httpx.Client(timeout=10) as http:
            upload = http.post(
                f"{guest['url']}memory/upload?name=a.txt&tab={hello['tab']}",
                content=b"hello",
                headers={**headers, "Origin": guest["url"].rstrip("/")},
            )
            assert upload.status_code == 400 and "only an owner" in upload.json()["error"]


def _answer(tab: Any, ref: str) -> dict[str, Any]:
    while True:
        message = json.loads(tab.recv(20))
        if message.get("t") == "memory" and message.get("ref") == ref:
            return dict(message)

// The memory panel: search (each hit with its score parts), add, edit, forget, the review list,
// uploads and imports with progress, the export. Everything a person or the model wrote is shown
// with textContent. The server answers {t: "memory", op, ref, ...}; see actors/web/memory.py.

import { $, button, el, statusLine } from "./ui.js";

const PARTS = ["semantic", "keyword", "recency", "importance"];

export function memoryPanel(hex, send) {
  let refs = 0;
  const waiting = new Map();  // ref -> what to do with its answer
  const state = { hits: [], query: null, searches: 0, review: null, reviewing: false, reports: [], progress: new Map() };
  hex.memory = state;
  const note = statusLine("memory-note");

  function ask(op, fields = {}, then = null) {
    const ref = `m${++refs}`;
    if (then) waiting.set(ref, then);
    if (!send({ t: "memory", op, ref, ...fields })) note("not connected", true);
    return ref;
  }




  function when(at) { return at ? new Date(at * 1000).toLocaleString() : ""; }

  function hitItem(h, { editable = true } = {}) {
    const li = el("li", "hit");
    li.dataset.id = h.id;
    li.append(el("div", "hit-text", h.text));
    const meta = [h.kind, h.person_id ? `about ${h.person_id}` : "general",
      `importance ${h.importance.toFixed(2)}`, when(h.created)];
    if (h.tags.length) meta.push(`#${h.tags.join(" #")}`);
    if (h.archived) meta.push("archived");
    if (h.pending) meta.push("waiting for approval");
    if (h.document) meta.push(h.document);
    li.append(el("div", "hit-meta", meta.filter(Boolean).join(" · ")));
    if (h.quote && h.quote !== h.text) li.append(el("div", "hit-quote", `“${h.quote}”`));
    if (Object.keys(h.parts).length) {
      const parts = el("div", "parts");
      parts.append(el("span", "score", `score ${h.score.toFixed(3)}`));
      for (const name of PARTS) {
        const part = el("span", "part");
        part.dataset.part = name;
        part.title = name;
        const bar = el("span", "bar");
        bar.style.width = `${Math.round((h.parts[name] || 0) * 100)}%`;
        part.append(el("span", "label", `${name} ${(h.parts[name] || 0).toFixed(2)}`), bar);
        parts.append(part);
      }
      for (const bonus of ["person", "when", "exact"]) {
        if (h.parts[bonus]) parts.append(el("span", "bonus", bonus));
      }
      li.append(parts);
    }
    if (editable && hex.owner) li.append(button("Edit", () => editForm(li, h)));
    if (editable && (hex.owner || h.person_id === hex.person)) {
      li.append(button("Forget", () => {
        if (confirm(`Forget this memory for good?\n\n${h.text}`)) forget([h.id]);
      }, "danger"));
    }
    return li;
  }

  function editForm(li, h) {
    const form = el("form", "edit");
    const text = el("textarea");
    text.value = h.text;
    text.rows = 2;
    const importance = el("input");
    Object.assign(importance, { type: "number", min: 0, max: 1, step: 0.05, value: h.importance });
    const tags = el("input");
    tags.value = h.tags.join(", ");
    tags.placeholder = "tags";
    const save = el("button", "", "Save");
    save.type = "submit";
    form.append(text, importance, tags, save, button("Cancel", () => form.remove()));
    form.addEventListener("submit", (e) => {
      e.preventDefault();
      ask("edit", {
        id: h.id,
        text: text.value === h.text ? "" : text.value,
        importance: Number(importance.value),
        tags: tags.value.split(",").map((t) => t.trim()).filter(Boolean),
      });
      form.remove();
    });
    li.append(form);
  }

  function forget(ids) { ask("forget", { ids }); }

  function search() {
    const kind = $("memory-kind").value;
    ask("search", {
      text: $("memory-query").value,
      person: $("memory-person").value.trim(),
      kinds: kind ? [kind] : [],
      tags: $("memory-tags").value.split(",").map((t) => t.trim()).filter(Boolean),
      archived: $("memory-archived").checked,
      k: 30,
    });
  }

  function showHits(hits, query) {
    state.hits = hits;
    state.query = query;
    state.searches += 1;
    const list = $("memory-hits");
    list.replaceChildren(...hits.map((h) => hitItem(h)));
    note(hits.length ? `${hits.length} ${query ? "found" : "newest"}` : "nothing found");
  }

  function showReview(m) {
    state.review = m;
    const box = $("memory-review");
    box.hidden = false;
    const pending = el("ul", "hits");
    for (const h of m.pending) {
      const li = hitItem(h, { editable: false });
      li.classList.add("pending");
      if (h.turn_ids.length) li.append(el("div", "hit-meta", `from turn ${h.turn_ids.join(", ")}`));
      li.append(button("Approve", () => ask("approve", { id: h.id }), "approve"),
        button("Reject", () => ask("reject", { id: h.id }), "danger reject"));
      pending.append(li);
    }
    const contradictions = el("ul", "hits");
    for (const c of m.contradictions) {
      const li = el("li", "contradiction");
      li.append(el("div", "hit-text", `“${c.older_text}” was replaced by “${c.newer_text}”`));
      li.append(el("div", "hit-meta", [when(c.at), c.note].filter(Boolean).join(" · ")));
      li.append(button("Keep the newer", () => forget([c.older_id])),
        button("Keep the older", () => forget([c.newer_id])));
      contradictions.append(li);
    }
    box.replaceChildren(
      el("h3", "", `Suggestions waiting (${m.pending.length})`), pending,
      el("h3", "", `Contradictions (${m.contradictions.length})`), contradictions,
      el("p", "hit-meta", `${m.archived_total} archived by aging (search with “archived” to see them)`),
    );
  }

  function progress(ref, done, total, unit) {
    const bar = $("memory-progress");
    bar.hidden = false;
    bar.max = total || 1;
    bar.value = done;
    state.progress.set(ref, { done, total, unit });
    $("memory-progress-text").textContent = `${done} / ${total} ${unit}`;
  }

  function sendFile(path, file, extra, what) {
    // XHR, not fetch: only XHR reports the bytes going up.
    const ref = `m${++refs}`;
    const query = new URLSearchParams({ name: file.name, tab: String(hex.tab), ref, ...extra });
    const xhr = new XMLHttpRequest();
    xhr.open("POST", `${path}?${query}`);
    xhr.upload.addEventListener("progress", (e) => {
      if (e.lengthComputable) progress(ref, e.loaded, e.total, "bytes sent");
    });
    xhr.addEventListener("load", () => {
      let answer = {};
      try { answer = JSON.parse(xhr.responseText); } catch { /* not JSON */ }
      if (xhr.status >= 400) {
        state.reports.push({ ref, op: "refused", text: answer.error || xhr.statusText });
        note(answer.error || `${what} failed (${xhr.status})`, true);
      } else {
        note(`${file.name}: sent, ${what}…`);
      }
    });
    xhr.addEventListener("error", () => note(`${what} failed: the connection broke`, true));
    xhr.send(file);
  }

  const on = {
    hits(m) { showHits(m.hits, m.query); },
    why(m) {},
    review(m) { showReview(m); },
    accepted(m) { note(`${m.what}: sent`); },
    changed(m) {
      state.reports.push(m);
      if (m.action === "refused") { note(`refused: ${m.detail}`, true); return; }
      const counts = Object.entries(m.counts).map(([k, v]) => `${k} ${v}`).join(", ");
      note(`${m.action}${counts ? ` (${counts})` : ""}${m.detail ? `: ${m.detail}` : ""}`);
      if (m.what === "upload") $("memory-progress").hidden = true;
      if (state.reviewing) ask("review");
      if (m.action !== "stored") search();
    },
    progress(m) { progress(m.ref, m.done, m.total, m.unit); },
    imported(m) {
      state.reports.push(m);
      const c = m.counts;
      note(`imported ${c.turns || 0} turns from ${m.name} (${c.already_known || 0} already known, ` +
        `${m.bad_lines} bad lines skipped${m.problems.length ? `: ${m.problems[0]}…` : ""})`);
    },
    "review-changed"() { if (state.reviewing) ask("review"); },
    refused(m) { state.reports.push(m); note(m.text, true); },
  };

  $("memory-search").addEventListener("submit", (e) => { e.preventDefault(); search(); });
  $("memory-add").addEventListener("submit", (e) => {
    e.preventDefault();
    const text = $("memory-add-text").value;
    if (!text.trim()) return;
    ask("add", {
      text,
      person: $("memory-add-person").value.trim() || hex.person,
      importance: Number($("memory-add-importance").value),
      tags: $("memory-add-tags").value.split(",").map((t) => t.trim()).filter(Boolean),
    });
    $("memory-add-text").value = "";
  });
  $("memory-review-button").addEventListener("click", () => { state.reviewing = true; ask("review"); });
  $("memory-upload").addEventListener("submit", (e) => {
    e.preventDefault();
    const file = $("memory-upload-file").files[0];
    if (!file) return;
    sendFile("/memory/upload", file, {
      person: $("memory-upload-person").value.trim(),
      tags: $("memory-upload-tags").value,
    }, "embedding");
  });
  $("memory-import").addEventListener("submit", (e) => {
    e.preventDefault();
    const file = $("memory-import-file").files[0];
    if (file) sendFile("/memory/import", file, {}, "importing");
  });
  $("memory-export").addEventListener("click", () => {
    location.href = `/memory/export?tab=${hex.tab}`;
  });

  return {
    on(m) {
      const then = waiting.get(m.ref);
      waiting.delete(m.ref);
      if (then) { then(m); return; }
      const handler = on[m.op];
      if (handler) handler(m);
    },
    shown() { search(); },
    // "Why Hex remembered this": the memories in a reply's prompt, under its bubble.
    why(bubble, ids) {
      ask("why", { ids }, (m) => {
        const box = el("ul", "hits why");
        if (m.op === "refused") box.append(el("li", "hit-meta", m.text));
        for (const h of m.hits || []) box.append(hitItem(h, { editable: false }));
        if (m.hits && m.hits.length < m.asked) {
          box.append(el("li", "hit-meta", `${m.asked - m.hits.length} since forgotten`));
        }
        bubble.querySelector(".why")?.remove();
        bubble.append(box);
      });
    },
  };
}

// The persona panel: persona.toml and its versions, diffs, an owner's edits (an error shown at
// its line) and rollbacks, and the consistency audit with its drift. See actors/web/persona.py.

import { $, el, statusLine } from "./ui.js";

export function personaPanel(hex, send) {
  let refs = 0;
  const state = { state: null, changes: [], audits: [], diff: null, progress: null, refused: [] };
  hex.persona = state;
  const note = statusLine("persona-note");

  function ask(op, fields = {}) {
    if (!send({ t: "persona", op, ref: `p${++refs}`, ...fields })) note("not connected", true);
  }



  function showState(m) {
    state.state = m;
    if (m.error) { note(m.error, true); return; }
    const editor = $("persona-text");
    editor.value = m.text;
    editor.dataset.version = String(m.version);
    $("persona-error").hidden = true;
    const versions = $("persona-versions");
    versions.replaceChildren(...[...m.versions].reverse().map((v) => {
      const o = el("option", "", `v${v.version}${v.version === m.active ? " (active)" : ""} · ` +
        `${new Date(v.created * 1000).toLocaleString()}${v.note ? ` · ${v.note}` : ""}`);
      o.value = String(v.version);
      o.selected = v.version === m.version;
      return o;
    }));
    note(`showing version ${m.version} of ${m.versions.length}; ${m.path}`);
    if (m.last_audit && m.last_audit.pass_rate) showAudit({ summary: m.last_audit, drift: {} }, true);
  }

  function showError(m) {
    const box = $("persona-error");
    box.hidden = false;
    box.replaceChildren(el("div", "", m.line ? `line ${m.line}: ${m.error}` : m.error));
    const editor = $("persona-text");
    if (m.line) {
      const lines = editor.value.split("\n");
      const start = lines.slice(0, m.line - 1).reduce((n, l) => n + l.length + 1, 0);
      editor.focus();
      editor.setSelectionRange(start, start + (lines[m.line - 1] || "").length);
      const excerpt = el("pre", "excerpt");
      for (let n = Math.max(1, m.line - 2); n <= Math.min(lines.length, m.line + 2); n++) {
        const row = el("span", n === m.line ? "bad" : "", `${String(n).padStart(4)}  ${lines[n - 1]}\n`);
        excerpt.append(row);
      }
      box.append(excerpt);
    }
  }

  function showDiff(m) {
    state.diff = m;
    const pre = $("persona-diff");
    pre.hidden = false;
    pre.replaceChildren(...(m.lines.length ? m.lines : ["(no difference)"]).map((line) => {
      const cls = line.startsWith("+") && !line.startsWith("+++") ? "add"
        : line.startsWith("-") && !line.startsWith("---") ? "del" : "";
      return el("span", cls, `${line}\n`);
    }));
  }

  function showAudit(m, old = false) {
    const box = $("persona-audit-report");
    box.hidden = false;
    const s = m.summary || {};
    const rows = Object.entries(s.pass_rate || {}).map(([check, rate]) => {
      const tr = el("tr");
      const delta = m.drift && m.drift.pass_rate_delta ? m.drift.pass_rate_delta[check] : undefined;
      tr.append(el("td", "", check), el("td", "", `${Math.round(rate * 100)}%`),
        el("td", delta ? (delta < 0 ? "worse" : "better") : "",
          delta === undefined ? "" : `${delta > 0 ? "+" : ""}${Math.round(delta * 100)}%`));
      return tr;
    });
    const table = el("table");
    const head = el("tr");
    head.append(el("th", "", "check"), el("th", "", "passed"), el("th", "", "since the last audit"));
    table.append(head, ...rows);
    const title = old ? `last audit (${s.report || ""})` :
      `audit of ${s.scenarios} scenarios in ${s.seconds}s` + (m.previous ? `, compared with ${m.previous}` : ", the first");
    const drift = m.drift && m.drift.drift !== undefined
      ? el("p", m.drift.drift ? "worse" : "", m.drift.drift
        ? `drift: ${(m.drift.drifted || []).join(", ") || "replies changed"}; ${Object.keys(m.drift.changed || {}).length} scenarios changed`
        : "no drift")
      : el("p", "", "");
    box.replaceChildren(el("h3", "", title), table, drift);
  }

  const on = {
    state(m) { showState(m); },
    diff(m) { showDiff(m); },
    changed(m) {
      state.changes.push(m);
      if (m.error) { showError(m); note("not saved: fix the line shown", true); return; }
      note(m.note || `version ${m.version} is active`);
      ask("get");
    },
    version(m) { if (!m.error) { note(`version ${m.version} is active: ${m.note}`); ask("get"); } },
    auditing(m) { note(`auditing ${m.limit || "every"} scenario${m.limit === 1 ? "" : "s"}…`); },
    "audit-progress"(m) {
      state.progress = m;
      const bar = $("persona-audit-progress");
      bar.hidden = false;
      bar.max = m.total || 1;
      bar.value = m.done;
    },
    audited(m) {
      state.audits.push(m);
      $("persona-audit-progress").hidden = true;
      if (m.error) { note(m.error, true); return; }
      note(`audit saved as ${m.report}`);
      showAudit(m);
    },
    refused(m) { state.refused.push(m); note(m.text, true); },
  };

  $("persona-save").addEventListener("submit", (e) => {
    e.preventDefault();
    ask("save", { text: $("persona-text").value, note: $("persona-save-note").value });
  });
  $("persona-show").addEventListener("click", () => ask("get", { version: Number($("persona-versions").value) }));
  $("persona-diff-button").addEventListener("click", () => {
    ask("diff", { a: Number($("persona-versions").value), b: state.state ? state.state.active : 0 });
  });
  $("persona-rollback").addEventListener("click", () => {
    const version = Number($("persona-versions").value);
    if (confirm(`Make version ${version} the active persona? (The current one stays in the history.)`)) {
      ask("rollback", { version });
    }
  });
  $("persona-audit").addEventListener("submit", (e) => {
    e.preventDefault();
    ask("audit", { limit: Number($("persona-audit-limit").value) || 0 });
  });

  return {
    on(m) { const handler = on[m.op]; if (handler) handler(m); },
    shown() { ask("get"); },
  };
}

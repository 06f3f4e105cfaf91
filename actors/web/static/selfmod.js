// The approval panel: her proposals to change herself, each with its reason, flags, the audit
// before and after and its diff; an owner approves, rejects or rolls back. See actors/web/selfmod.py.

import { $, el, button, statusLine } from "./ui.js";

export function selfmodPanel(hex, send) {
  let refs = 0;
  const state = { proposals: [], shown: null, changes: [], updates: [], refused: [] };
  hex.selfmod = state;
  const say = statusLine("selfmod-note");

  let listRef = "", retries = 0;
  function ask(op, fields = {}) {
    const ref = `s${++refs}`;
    if (op === "list") listRef = ref;
    if (send({ t: "selfmod", op, ref, ...fields })) return true;
    say("not connected", true);
    return false;
  }

  function decide(action, p) {
    const what = action === "rollback" ? `Roll back proposal ${p.id} (the files as they were before it)?`
      : action === "approve" ? `Apply proposal ${p.id}? ${p.flags.length ? `(flags: ${p.flags.join(", ")})` : ""}`
        : `Reject proposal ${p.id}?`;
    if (!confirm(what)) return;
    const note = $("selfmod-decision-note");
    ask(action, { id: p.id, note: note.value });
    note.value = "";  // a note goes with one decision, not the next
  }

  function audit(p) {
    if (!p.before || !p.after) return "";
    return `audit ${p.before.pass_rate.toFixed(2)} → ${p.after.pass_rate.toFixed(2)} (${p.after.scenarios} scenarios)`;
  }

  function showList(proposals) {
    state.proposals = proposals;
    const rows = proposals.map((p) => {
      const row = el("div", `proposal ${p.status}`);
      row.dataset.id = String(p.id);
      row.append(
        el("strong", "", `#${p.id} ${p.status.replace("_", " ")}`),
        el("span", "", ` ${p.why}`),
        el("span", "hit-meta", ` · ${p.level} · ${p.origin}${p.flags.length ? ` · ⚠️ ${p.flags.join(", ")}` : ""} ${audit(p)}`),
        button("Show", () => ask("show", { id: p.id })),
      );
      if (p.status === "ready") {
        row.append(button("Approve", () => decide("approve", p), "owner-only"),
          button("Reject", () => decide("reject", p), "owner-only"));
      }
      if (p.status === "applied" || p.status === "kept") {
        row.append(button("Roll back", () => decide("rollback", p), "owner-only"));
      }
      if (p.reason) row.append(el("div", "hit-meta", p.reason));
      return row;
    });
    $("selfmod-list").replaceChildren(...(rows.length ? rows : [el("p", "hit-meta", "no proposals yet")]));
  }

  function showOne(p) {
    state.shown = p;
    const pre = $("selfmod-diff");
    pre.hidden = false;
    const head = [`proposal ${p.id} (${p.status.replace("_", " ")}): ${p.why}`,
      `changes: ${(p.keys.length ? p.keys : p.files).join(", ")}`, audit(p),
      p.sandbox ? `sandbox: ${p.sandbox}` : ""].filter(Boolean);
    pre.replaceChildren(el("span", "", head.join("\n") + "\n\n"), ...p.diff.split("\n").map((line) => {
      const cls = line.startsWith("+") && !line.startsWith("+++") ? "add"
        : line.startsWith("-") && !line.startsWith("---") ? "del" : "";
      return el("span", cls, `${line}\n`);
    }));
  }

  const on = {
    list(m) { retries = 0; showList(m.proposals); say(`${m.proposals.length} proposal${m.proposals.length === 1 ? "" : "s"}`); },
    show(m) { if (m.proposals.length) showOne(m.proposals[0]); },
    sent(m) { say(m.action === "request" ? "asked: waiting for selfmod…" : `${m.action} ${m.id}: sent, waiting for selfmod…`); },
    changed(m) {
      state.changes.push(m);
      say(m.error || m.line, Boolean(m.error));
      ask("list");
    },
    // Also what came of a request later (the brain's draft failed): said where it is seen.
    update(m) { state.updates.push(m); if (m.line || m.error) say(m.error || m.line, Boolean(m.error)); ask("list"); },
    refused(m) {
      state.refused.push(m);
      say(m.text, true);
      // selfmod did not answer the list in time (still starting, or a busy machine): the open
      // panel asks again a few times rather than stay empty until someone presses Refresh.
      if (m.ref === listRef && /did not answer/.test(m.text) && hex.selfmodShown && retries < 20) {
        retries += 1;
        setTimeout(() => { if (hex.selfmodShown) ask("list"); }, 3000);
      }
    },
  };

  $("selfmod-refresh").addEventListener("click", () => ask("list"));
  $("selfmod-request-form").addEventListener("submit", (e) => {
    e.preventDefault();
    const text = $("selfmod-request");
    if (!text.value.trim()) return;
    if (ask("request", { text: text.value, key: "" })) text.value = "";
  });

  return {
    on(m) { const handler = on[m.op]; if (handler) handler(m); },
    shown() { ask("list"); },
  };
}

// Hex's page: chat over one websocket. Text from people and streamed pieces are shown with
// textContent; a final reply's HTML comes from the server's Markdown renderer, which escapes raw
// HTML (and the page's Content-Security-Policy runs no script but this file).

import { memoryPanel } from "./memory.js";
import { personaPanel } from "./persona.js";
import { selfmodPanel } from "./selfmod.js";
import { usagePanel } from "./usage.js";
import { voicePanel } from "./voice.js";

const $ = (id) => document.getElementById(id);
const log = $("log"), input = $("input"), stopButton = $("stop"), typing = $("typing");

const hex = {
  socket: null,
  person: "",
  conversation: localStorage.getItem("hex.conversation") || "main",
  conversations: JSON.parse(localStorage.getItem("hex.conversations") || '["main"]'),
  pending: new Map(),   // local id -> the person's bubble, until the message is accepted
  replies: new Map(),   // message event id -> { bubble, pieces }
  inflight: new Set(),  // message ids whose final reply has not come
  retry: 500,
  controlled: [],       // answers to the runtime panel's restart, kill switch and switches
  capabilities: [],     // the switches as this tab's person has them (rows from the supervisor)
  switching: 0,         // switches sent and not yet answered: tables until then are stale
  tail: { on: false, paused: false, prefixes: [], kept: [], lines: 0, skipped: 0 },
  supervisorLog: [],    // the supervisor's log events, newest last
  runtimeShown: false,
  memoryShown: false,
  personaShown: false,
  selfmodShown: false,
  usageShown: false,
  tab: 0,               // this tab's id on the server (uploads name it)
  owner: false,
  history: { turns: 0, pages: 0 },
  // What the page measured (performance.now()): bench/web.py and the tests read it.
  stats: { acks: 0, chunks: 0, replies: 0, sentAt: new Map(), firstChunkAt: new Map() },
};
window.hex = hex;

function remember() {
  localStorage.setItem("hex.conversation", hex.conversation);
  localStorage.setItem("hex.conversations", JSON.stringify(hex.conversations));
}

function showConversations() {
  const nav = $("conversations");
  nav.replaceChildren(...hex.conversations.map((name) => {
    const b = document.createElement("button");
    b.type = "button";
    b.textContent = name;
    b.setAttribute("aria-current", String(name === hex.conversation));
    b.addEventListener("click", () => switchTo(name));
    return b;
  }));
}

function switchTo(name) {
  hex.conversation = name;
  if (!hex.conversations.includes(name)) hex.conversations.push(name);
  remember();
  showConversations();
  log.replaceChildren();
  hex.replies.clear();
  hex.inflight.clear();
  updateStop();
  send({ t: "watch", conversation: name });
  voice.switched();
}

let scrolling = false;
function scrollDown() {  // once a frame at most: each scroll forces a layout of the whole log
  if (scrolling) return;
  scrolling = true;
  requestAnimationFrame(() => { scrolling = false; log.scrollTop = log.scrollHeight; });
}

function make(kind, text) {
  const div = document.createElement("div");
  div.className = `msg ${kind}`;
  if (text !== undefined) div.textContent = text;
  return div;
}

function bubble(kind, text) {
  const div = make(kind, text);
  log.append(div);
  scrollDown();
  return div;
}

function addWhy(div, ids) {
  const b = document.createElement("button");
  b.type = "button";
  b.className = "why-button";
  b.textContent = `why? (${ids.length} memor${ids.length === 1 ? "y" : "ies"})`;
  b.title = "the memories that went into this reply";
  b.addEventListener("click", () => memory.why(div, ids));
  div.append(b);
}

function system(text, error = false) {
  const div = document.createElement("div");
  div.className = error ? "system error" : "system";
  div.textContent = text;
  log.append(div);
  scrollDown();
}

function replyFor(id) {
  let reply = hex.replies.get(id);
  if (!reply) {
    reply = { bubble: bubble("hex streaming"), pieces: [] };
    reply.bubble.dataset.replyTo = id;
    hex.replies.set(id, reply);
  }
  return reply;
}

function updateStop() {
  stopButton.hidden = hex.inflight.size === 0;
  if (hex.inflight.size === 0) typing.hidden = true;
}

function send(message) {
  if (hex.socket && hex.socket.readyState === WebSocket.OPEN) {
    hex.socket.send(JSON.stringify(message));
    return true;
  }
  return false;
}

let locals = 0;
function say(text) {
  const local = `l${++locals}`;
  const mine = bubble("person", text);
  mine.dataset.local = local;
  hex.stats.sentAt.set(local, performance.now());
  if (!send({ t: "say", conversation: hex.conversation, text, local })) {
    mine.classList.add("failed");
    system("not connected: the message was not sent", true);
    return;
  }
  hex.pending.set(local, mine);
}

const handlers = {
  hello(m) {
    hex.person = m.person;
    hex.owner = m.owner;
    hex.tab = m.tab;
    hex.retry = 500;
    hex.switching = 0;
    document.body.dataset.owner = String(m.owner);
    send({ t: "watch", conversation: hex.conversation });
    send({ t: "conversations" });
    if (hex.memoryShown) memory.shown();
    if (hex.personaShown) persona.shown();
    if (hex.selfmodShown) selfmod.shown();
    if (hex.usageShown) usage.shown();
    voice.switched();
    if (hex.runtimeShown) { send({ t: "runtime", log: true }); send({ t: "capabilities" }); }
    if (hex.tail.on) send({ t: "tail", prefixes: hex.tail.prefixes });
  },
  watching() {},
  sent(m) {
    const mine = hex.pending.get(m.local);
    hex.pending.delete(m.local);
    if (mine) mine.dataset.id = m.id;
    const at = hex.stats.sentAt.get(m.local);
    if (at !== undefined) { hex.stats.sentAt.delete(m.local); hex.stats.sentAt.set(m.id, at); }
    hex.inflight.add(m.id);
    updateStop();
  },
  ack(m) {
    hex.stats.acks += 1;
    if (hex.inflight.has(m.id)) typing.hidden = false;
  },
  chunk(m) {
    const reply = replyFor(m.reply_to);
    if (reply.done) return;
    if (m.index === reply.pieces.length) {
      reply.pieces.push(m.text);  // the usual case, in order: append, never re-join a long reply
      reply.bubble.append(m.text);
    } else {
      reply.pieces[m.index] = m.text;
      reply.bubble.textContent = reply.pieces.join("");
    }
    typing.hidden = true;
    hex.stats.chunks += 1;
    if (!hex.stats.firstChunkAt.has(m.reply_to)) hex.stats.firstChunkAt.set(m.reply_to, performance.now());
    scrollDown();
  },
  reply(m) {
    // A final sent again on (re)connecting: only for a reply this page is still waiting for.
    if (m.again && !hex.inflight.has(m.reply_to)) return;
    hex.inflight.delete(m.reply_to);
    updateStop();
    hex.stats.replies += 1;
    const reply = replyFor(m.reply_to);
    reply.done = true;
    const b = reply.bubble;
    b.classList.remove("streaming");
    b.dataset.status = m.status;
    if (m.merged_into) {
      b.remove();  // answered together with a later line
      return;
    }
    if (m.html) b.innerHTML = m.html;
    else b.textContent = m.text;
    if (m.recalled && m.recalled.length) addWhy(b, m.recalled);
    if (m.status !== "complete") {
      const note = document.createElement("span");
      note.className = "status";
      note.textContent = m.status === "cancelled" ? "stopped" : "could not answer";
      b.append(note);
      if (m.status === "failed") b.classList.add("failed");
    }
  },
  history(m) {
    if (m.conversation !== hex.conversation) return;
    if (m.error) system(m.error, true);
    const past = document.createDocumentFragment();
    for (const t of m.turns) {
      // Shown already: by a page of history before (a reconnect asks again), or live.
      if (log.querySelector(`[data-id="${CSS.escape(t.id)}"]`)) continue;
      if (t.reply_to && (hex.replies.has(t.reply_to) ||
          log.querySelector(`[data-reply-to="${CSS.escape(t.reply_to)}"]`))) continue;
      let div;
      if (t.role === "user") {
        div = make("person", t.text);
      } else {
        div = make("hex");
        div.innerHTML = t.html;
        if (t.reply_to) div.dataset.replyTo = t.reply_to;
        if (t.recalled.length) addWhy(div, t.recalled);
      }
      div.dataset.id = t.id;
      div.classList.add("past");
      div.dataset.at = String(t.at);
      past.append(div);
    }
    hex.history.turns += m.turns.length;
    hex.history.pages += 1;
    log.querySelector(".older")?.remove();
    if (m.more && m.turns.length) {
      const older = document.createElement("button");
      older.type = "button";
      older.className = "older";
      older.textContent = "Older messages";
      const before = m.turns[0].at, beforeId = m.turns[0].id;
      older.addEventListener("click", () => send({ t: "history", conversation: hex.conversation, before, before_id: beforeId }));
      past.prepend(older);
    }
    log.prepend(past);
    if (!m.before) scrollDown();
  },
  conversations(m) {
    let added = false;
    for (const c of m.conversations) {
      if (!hex.conversations.includes(c.conversation)) { hex.conversations.push(c.conversation); added = true; }
    }
    if (added) { remember(); showConversations(); }
  },
  memory(m) { memory.on(m); },
  persona(m) { persona.on(m); },
  selfmod(m) { selfmod.on(m); },
  usage(m) { usage.on(m); },
  voice(m) { voice.on.voice(m); },
  "audio-out"(m) { voice.on["audio-out"](m); },
  speaking(m) { voice.on.speaking(m); },
  heard(m) { voice.on.heard(m); },
  hearing(m) { voice.on.hearing(m); },
  actors(m) { showActors(m.rows); },
  log(m) {
    hex.supervisorLog.push(...m.lines);
    if (hex.supervisorLog.length > 500) hex.supervisorLog.splice(0, hex.supervisorLog.length - 500);
    const pre = $("supervisor-log");
    pre.textContent = hex.supervisorLog.map(logLine).join("\n");
    pre.scrollTop = pre.scrollHeight;
  },
  tailing() {},
  tail(m) {
    hex.tail.lines += m.lines.length;
    hex.tail.skipped += m.skipped;
    const lines = m.skipped ? [...m.lines, `… ${m.skipped} more not shown`] : m.lines;
    hex.tail.kept.push(...lines);
    if (hex.tail.kept.length > 1000) hex.tail.kept.splice(0, hex.tail.kept.length - 1000);
    if (!hex.tail.paused) drawTail();
  },
  controlled(m) {
    $("runtime-note").textContent = m.text;
    hex.controlled.push(m);
    if (m.switch) hex.switching = Math.max(0, hex.switching - 1);
  },
  capabilities(m) {
    // A table sent before a switch was applied would flip the box just clicked back (and a
    // second click would send the switch twice): redraw only when no switch is unanswered.
    // The server sends the table again after each switch's answer.
    hex.capabilities = m.rows;
    if (!hex.switching) drawCapabilities(m.rows, m.owner);
  },
  notice(m) { system(m.text); },
  error(m) {
    system(m.text, true);
    const mine = m.local && hex.pending.get(m.local);
    if (mine) { mine.classList.add("failed"); hex.pending.delete(m.local); }
  },
  stopping() {},
  refused(m) { system(m.text, true); },
  dropped(m) { hex.dropped = m.text; system(m.text, true); },
};

function connect() {
  const scheme = location.protocol === "https:" ? "wss" : "ws";
  const socket = new WebSocket(`${scheme}://${location.host}/ws`);
  hex.socket = socket;
  const state = $("connection");
  socket.addEventListener("open", () => { state.textContent = "connected"; state.classList.add("up"); });
  socket.addEventListener("message", (e) => {
    let m;
    try { m = JSON.parse(e.data); } catch { return; }
    const handler = handlers[m.t];
    if (handler) handler(m);
  });
  socket.addEventListener("close", () => {
    state.textContent = "reconnecting…";
    state.classList.remove("up");
    hex.retry = Math.min(hex.retry * 2, 10000);
    setTimeout(connect, hex.retry);
  });
}

$("composer").addEventListener("submit", (e) => {
  e.preventDefault();
  const text = input.value;
  if (!text.trim()) return;
  input.value = "";
  say(text);
});
input.addEventListener("keydown", (e) => {
  if (e.key === "Enter" && !e.shiftKey && !e.isComposing) {
    e.preventDefault();
    $("composer").requestSubmit();
  }
});
stopButton.addEventListener("click", () => send({ t: "stop", conversation: hex.conversation }));
$("new-conversation").addEventListener("click", () => {
  let n = hex.conversations.length + 1;
  while (hex.conversations.includes(`chat-${n}`)) n += 1;
  switchTo(`chat-${n}`);
});

function size(bytes) { return bytes ? `${Math.round(bytes / 1048576)}M` : "-"; }
function age(s) {
  if (!s) return "-";
  const m = Math.floor(s / 60), h = Math.floor(m / 60);
  return h ? `${h}h${String(m % 60).padStart(2, "0")}m` : m ? `${m}m${String(Math.floor(s % 60)).padStart(2, "0")}s` : `${Math.floor(s)}s`;
}

function showActors(rows) {
  const body = $("actors");
  body.replaceChildren(...rows.map((r) => {
    const tr = document.createElement("tr");
    tr.dataset.actor = r.actor;
    tr.dataset.state = r.state;
    tr.dataset.pid = String(r.pid || "");
    tr.dataset.dead = String(r.dead_letters || 0);
    if (r.state !== "live") tr.className = "down";
    const cells = [r.actor, r.state, r.pid || "-", age(r.uptime_s), r.restarts, size(r.rss_bytes),
      r.cpu_s ? r.cpu_s.toFixed(1) : "-", r.heartbeat_s === null ? "-" : `${r.heartbeat_s}s`,
      r.events_in, r.events_out, r.dropped, r.dead_letters, r.reason || r.detail];
    for (const [i, value] of cells.entries()) {
      const td = document.createElement("td");
      td.textContent = String(value);
      if (i === cells.length - 1) td.className = "detail";
      tr.append(td);
    }
    const td = document.createElement("td");
    if (r.actor !== "broker") {
      const b = document.createElement("button");
      b.type = "button";
      b.textContent = "Restart";
      b.className = "restart";
      b.addEventListener("click", () => {
        if (confirm(`Restart ${r.actor}? Its state survives; what it was doing starts again.`)) {
          send({ t: "control", action: "restart", actor: r.actor });
        }
      });
      td.append(b);
    }
    tr.append(td);
    return tr;
  }));
}

function drawCapabilities(rows, owner) {
  // One checkbox for the person's own switch; for an owner, one for everyone's.
  const toggle = (r, everyone) => {
    const box = document.createElement("input");
    box.type = "checkbox";
    box.checked = Boolean(everyone ? r.everyone : r.enabled);
    box.className = everyone ? "everyone" : "mine";
    box.setAttribute("aria-label", `${r.name} ${everyone ? "for everyone" : "for me"}`);
    box.addEventListener("change", () => {
      hex.switching += 1;
      send({ t: "capability", name: r.name, enabled: box.checked, everyone });
    });
    return box;
  };
  $("capabilities").replaceChildren(...rows.map((r) => {
    const tr = document.createElement("tr");
    tr.dataset.capability = r.name;
    tr.dataset.enabled = String(r.enabled);
    const cells = [r.name, toggle(r, false), owner ? toggle(r, true) : "-", r.default ? "on" : "off", r.description];
    for (const value of cells) {
      const td = document.createElement("td");
      if (typeof value === "string") td.textContent = value; else td.append(value);
      tr.append(td);
    }
    return tr;
  }));
}

$("show-runtime").addEventListener("click", () => {
  hex.runtimeShown = !hex.runtimeShown;
  $("runtime").hidden = !hex.runtimeShown;
  $("show-runtime").setAttribute("aria-pressed", String(hex.runtimeShown));
  if (hex.runtimeShown) {
    send({ t: "runtime", log: true });
    send({ t: "capabilities" });
  }
});
$("show-memory").addEventListener("click", () => {
  hex.memoryShown = !hex.memoryShown;
  $("memory").hidden = !hex.memoryShown;
  $("show-memory").setAttribute("aria-pressed", String(hex.memoryShown));
  if (hex.memoryShown) memory.shown();
});
$("show-persona").addEventListener("click", () => {
  hex.personaShown = !hex.personaShown;
  $("persona").hidden = !hex.personaShown;
  $("show-persona").setAttribute("aria-pressed", String(hex.personaShown));
  if (hex.personaShown) persona.shown();
});
$("show-selfmod").addEventListener("click", () => {
  hex.selfmodShown = !hex.selfmodShown;
  $("selfmod").hidden = !hex.selfmodShown;
  $("show-selfmod").setAttribute("aria-pressed", String(hex.selfmodShown));
  if (hex.selfmodShown) selfmod.shown();
});
$("show-usage").addEventListener("click", () => {
  hex.usageShown = !hex.usageShown;
  $("usage").hidden = !hex.usageShown;
  $("show-usage").setAttribute("aria-pressed", String(hex.usageShown));
  if (hex.usageShown) usage.shown(); else usage.hidden();
});
$("killswitch").addEventListener("click", () => {
  if (confirm("Kill switch: stop every actor but the broker and this page, until restarted by hand?")) {
    send({ t: "control", action: "killswitch" });
  }
});

function logLine(e) {
  const { seq, timestamp, level, event, process, pid, ...rest } = e;
  const fields = Object.entries(rest).map(([k, v]) => `${k}=${typeof v === "string" ? v : JSON.stringify(v)}`);
  return `${(timestamp || "").slice(11, 19)} ${(level || "").padEnd(7)} ${event || ""} ${fields.join(" ")}`;
}

function drawTail() {
  const pre = $("tail");
  pre.textContent = hex.tail.kept.join("\n");
  pre.scrollTop = pre.scrollHeight;
}

function startTail() {
  hex.tail.prefixes = $("tail-prefixes").value.split(/[\s,]+/).filter(Boolean);
  hex.tail.on = true;
  $("tail").hidden = false;
  send({ t: "tail", prefixes: hex.tail.prefixes });
}

$("tail-form").addEventListener("submit", (e) => { e.preventDefault(); startTail(); });
$("tail-pause").addEventListener("click", () => {
  hex.tail.paused = !hex.tail.paused;
  $("tail-pause").setAttribute("aria-pressed", String(hex.tail.paused));
  $("tail-pause").textContent = hex.tail.paused ? "Resume" : "Pause";
  if (!hex.tail.paused) drawTail();
});
$("tail-stop").addEventListener("click", () => {
  hex.tail.on = false;
  send({ t: "tail", off: true });
});

const memory = memoryPanel(hex, send);
const persona = personaPanel(hex, send);
const selfmod = selfmodPanel(hex, send);
const usage = usagePanel(hex, send);
// What the person said aloud: their bubble, and a reply to wait for (typing, Stop).
const voice = voicePanel(hex, send, (m) => {
  if (!m.id || log.querySelector(`[data-id="${CSS.escape(m.id)}"]`)) return;
  const mine = bubble("person spoken", m.text);
  mine.dataset.id = m.id;
  hex.inflight.add(m.id);
  updateStop();
});
hex.say = say;
hex.switchTo = switchTo;
showConversations();
connect();

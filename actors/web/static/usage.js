// The usage and latency panel: tokens per backend, person and day (a chart), each backend's
// state (awake, sleepy, asleep until its reset), per-turn latency waterfalls, the machine (CPU and
// RAM over time, GPUs or "no GPU", each actor's memory). Drawn in the page: no chart library.

import { $, el } from "./ui.js";
const COLORS = ["#7b5cff", "#2a9d5b", "#e09f3e", "#d66", "#3a86ff", "#8d99ae"];
const STAGE_COLORS = { transcribed: "#3a86ff", first_token: "#7b5cff", first_sentence: "#e09f3e",
  first_audio: "#2a9d5b", first_chunk: "#7b5cff" };


function mib(bytes) { return bytes ? `${Math.round(bytes / 1048576)} MiB` : "-"; }

function row(cells, cls = "") {
  const tr = el("tr", cls);
  for (const c of cells) tr.append(el("td", "", String(c)));
  return tr;
}

function table(head, rows) {
  const t = el("table");
  const h = el("tr");
  for (const c of head) h.append(el("th", "", c));
  t.append(h, ...rows);
  return t;
}

export function usagePanel(hex, send) {
  const state = { last: null, samples: [], updates: 0 };
  hex.usage = state;

  function tokensChart(lines) {
    // Stacked bars: one per day (the last 14 with any use), a colour per backend.
    const canvas = $("usage-tokens-chart");
    const ctx = canvas.getContext("2d");
    const days = [...new Set(lines.map((l) => l.day))].sort().slice(-14);
    const backends = [...new Set(lines.map((l) => l.backend))].sort();
    const totals = days.map((d) => backends.map((b) => lines
      .filter((l) => l.day === d && l.backend === b)
      .reduce((n, l) => n + l.prompt_tokens + l.completion_tokens, 0)));
    const top = Math.max(1, ...totals.map((t) => t.reduce((a, b) => a + b, 0)));
    const { width, height } = canvas;
    ctx.clearRect(0, 0, width, height);
    ctx.font = "10px system-ui";
    const bar = days.length ? Math.min(40, (width - 20) / days.length - 6) : 0;
    days.forEach((day, i) => {
      let y = height - 14;
      const x = 10 + i * (bar + 6);
      totals[i].forEach((n, j) => {
        const h = (n / top) * (height - 30);
        ctx.fillStyle = COLORS[j % COLORS.length];
        ctx.fillRect(x, y - h, bar, h);
        y -= h;
      });
      ctx.fillStyle = getComputedStyle(document.body).color;
      ctx.fillText(day.slice(5), x, height - 2);
    });
    state.chart = { days, backends, totals };
    const legend = $("usage-legend");
    legend.replaceChildren(...backends.map((b, j) => {
      const s = el("span", "legend", b);
      s.style.borderColor = COLORS[j % COLORS.length];
      return s;
    }));
  }

  function sparkline(canvas, values, max) {
    const ctx = canvas.getContext("2d");
    const { width, height } = canvas;
    ctx.clearRect(0, 0, width, height);
    ctx.strokeStyle = COLORS[0];
    ctx.beginPath();
    values.forEach((v, i) => {
      const x = (i / Math.max(1, values.length - 1)) * width;
      const y = height - (v / max) * (height - 2) - 1;
      if (i) ctx.lineTo(x, y); else ctx.moveTo(x, y);
    });
    ctx.stroke();
  }

  function waterfalls(turns) {
    const box = $("usage-turns");
    const top = Math.max(1, ...turns.map((t) => t.stages.reduce((n, [, ms]) => n + ms, 0)));
    box.replaceChildren(...[...turns].reverse().slice(0, 15).map((t) => {
      const line = el("div", "turn");
      line.dataset.kind = t.kind;
      line.append(el("span", "turn-label", `${t.kind} ${Math.round(t.total_ms)} ms`));
      const bars = el("span", "bars");
      for (const [stage, ms] of t.stages) {
        const seg = el("span", "seg");
        seg.dataset.stage = stage;
        seg.title = `${stage.replace("_", " ")}: ${Math.round(ms)} ms`;
        seg.style.width = `${(ms / top) * 100}%`;
        seg.style.background = STAGE_COLORS[stage] || "#888";
        bars.append(seg);
      }
      line.append(bars);
      return line;
    }));
    if (!turns.length) box.replaceChildren(el("p", "hit-meta", "no turns measured yet"));
  }

  function show(m) {
    state.last = m;
    state.updates += 1;
    const brain = m.brain;
    $("usage-note").textContent = brain.error || "";
    $("usage-backends").replaceChildren(table(
      ["backend", "state", "until", "requests", "failed", "prompt", "completion", "last error"],
      brain.backends.map((b) => {
        const tr = row([b.name, b.state, b.until ? new Date(b.until * 1000).toLocaleTimeString() : "",
          b.requests, b.failures, b.prompt_tokens, b.completion_tokens, b.error]);
        tr.dataset.backend = b.name;
        tr.dataset.state = b.state;
        tr.children[1].className = `state ${b.state}`;
        return tr;
      }),
    ));
    tokensChart(brain.lines);
    const people = new Map();
    for (const l of brain.lines) {
      const p = people.get(l.person) || { tokens: 0, replies: 0 };
      p.tokens += l.prompt_tokens + l.completion_tokens;
      p.replies += l.replies;
      people.set(l.person, p);
    }
    $("usage-people").replaceChildren(table(["person", "tokens", "replies"],
      [...people.entries()].sort((a, b) => b[1].tokens - a[1].tokens)
        .map(([person, p]) => row([person, p.tokens, p.replies]))));
    waterfalls(m.turns);
    const machine = m.machine;
    state.samples.push(machine);
    if (state.samples.length > 120) state.samples.shift();
    $("usage-cpu").textContent = `CPU ${Math.round(machine.cpu_percent)}% of ${machine.cpus}`;
    $("usage-ram").textContent = `RAM ${mib(machine.ram_used)} of ${mib(machine.ram_total)}`;
    sparkline($("usage-cpu-chart"), state.samples.map((s) => s.cpu_percent), 100);
    sparkline($("usage-ram-chart"), state.samples.map((s) => s.ram_used), machine.ram_total);
    $("usage-gpus").textContent = machine.gpus.length
      ? machine.gpus.map((g) => `GPU ${g.index} ${g.name}: ${mib(g.used)} of ${mib(g.total)}, ${g.util}% busy`).join("\n")
      : (machine.gpu_error || "no GPU");
    $("usage-actors").replaceChildren(table(["actor", "state", "RSS", "CPU s", "GPU"],
      m.actors.map((a) => row([a.actor, a.state, mib(a.rss_bytes), a.cpu_s.toFixed(1),
        a.gpu_bytes ? mib(a.gpu_bytes) : machine.gpus.length ? "0" : "no GPU"]))));
  }

  return {
    on(m) { show(m); },
    shown() { send({ t: "usage" }); },
    hidden() { send({ t: "usage", off: true }); },
  };
}

// Voice in the page: the microphone (getUserMedia with the browser's echo cancellation and noise
// suppression, an AudioWorklet at 16 kHz) to Hex over the page's websocket, hands-free or push to
// talk; Hex's speech played back gaplessly, and dropped at once when someone speaks over her.

import { $ } from "./ui.js";

function toBase64(bytes) {
  let text = "";
  for (let i = 0; i < bytes.length; i += 0x8000) text += String.fromCharCode(...bytes.subarray(i, i + 0x8000));
  return btoa(text);
}

function fromBase64(text) {
  const raw = atob(text);
  const bytes = new Uint8Array(raw.length);
  for (let i = 0; i < raw.length; i++) bytes[i] = raw.charCodeAt(i);
  return bytes;
}

export function voicePanel(hex, send, onHeard) {
  const v = {
    on: false, mode: "", talking: false, seq: 0, error: "",
    mic: null, stream: null, node: null, player: null, nextTime: 0, sources: new Set(),
    stats: { framesSent: 0, bytesSent: 0, chunksIn: 0, bytesIn: 0, bytesPlayed: 0,
      interrupted: 0, heard: [], speaking: false, late: 0, byReply: {}, atStop: {} },
    stopped: new Set(),  // replies interrupted: a chunk of one still on its way is not played
  };
  hex.voice = v;

  function status(text, error = false) {
    const el = $("voice-status");
    el.textContent = text;
    el.classList.toggle("error", error);
  }

  async function start(mode) {
    if (v.on) { v.mode = mode; v.talking = mode === "hands-free"; show(); return; }
    try {
      v.stream = await navigator.mediaDevices.getUserMedia({
        audio: { echoCancellation: true, noiseSuppression: true, autoGainControl: true, channelCount: 1 },
      });
      v.mic = new AudioContext();
      await v.mic.audioWorklet.addModule("/static/mic-worklet.js");
      const source = v.mic.createMediaStreamSource(v.stream);
      v.node = new AudioWorkletNode(v.mic, "hex-mic");
      v.node.port.onmessage = (e) => frame(new Uint8Array(e.data));
      source.connect(v.node);
      v.player = v.player || new AudioContext();
      await v.player.resume();
    } catch (err) {
      v.error = `${err.name || "Error"}: ${err.message}`;
      status(`no microphone (${v.error}): allow it for this page, or type`, true);
      stop();
      return;
    }
    v.on = true;
    v.mode = mode;
    v.talking = mode === "hands-free";
    send({ t: "voice", on: true, conversation: hex.conversation });
    show();
  }

  function stop() {
    if (v.on) send({ t: "voice", on: false, conversation: hex.conversation, seq: v.seq++ });
    v.on = false;
    v.talking = false;
    if (v.node) v.node.port.onmessage = null;
    if (v.stream) for (const track of v.stream.getTracks()) track.stop();
    if (v.mic) v.mic.close();
    v.mic = v.stream = v.node = null;
    flush();
    show();
  }

  function frame(bytes) {
    if (!v.on || !v.talking) return;
    if (send({ t: "audio", conversation: hex.conversation, seq: v.seq++, pcm: toBase64(bytes) })) {
      v.stats.framesSent += 1;
      v.stats.bytesSent += bytes.length;
    }
  }

  function release() {  // push to talk: the end of what was said
    if (!v.on || v.mode !== "push" || !v.talking) return;
    v.talking = false;
    send({ t: "audio", conversation: hex.conversation, seq: v.seq++, pcm: "", end: true });
    show();
  }

  function play(m) {
    if (!v.player) return;
    const bytes = fromBase64(m.pcm);
    const samples = new Int16Array(bytes.buffer, 0, bytes.length >> 1);
    v.stats.chunksIn += 1;
    v.stats.bytesIn += bytes.length;
    if (v.stopped.has(m.reply_to)) { v.stats.late += bytes.length; return; }
    if (!samples.length) return;
    const buffer = v.player.createBuffer(1, samples.length, m.rate);
    const data = buffer.getChannelData(0);
    for (let i = 0; i < samples.length; i++) data[i] = samples[i] / 32768;
    const node = v.player.createBufferSource();
    node.buffer = buffer;
    node.connect(v.player.destination);
    // Back to back: each chunk starts where the one before ends (no gap, no overlap).
    const at = Math.max(v.player.currentTime + 0.05, v.nextTime);
    node.start(at);
    v.nextTime = at + buffer.duration;
    node.flushed = false;
    node.onended = () => {
      v.sources.delete(node);
      if (node.flushed) return;
      v.stats.bytesPlayed += bytes.length;
      v.stats.byReply[m.reply_to] = (v.stats.byReply[m.reply_to] || 0) + bytes.length;
    };
    v.sources.add(node);
  }

  function flush() {  // a barge-in: what she had not said yet is dropped
    for (const node of v.sources) { node.flushed = true; try { node.stop(); } catch { /* not started */ } }
    v.sources.clear();
    v.nextTime = 0;
  }

  function show() {
    $("voice-hands-free").setAttribute("aria-pressed", String(v.on && v.mode === "hands-free"));
    $("voice-push").setAttribute("aria-pressed", String(v.on && v.mode === "push" && v.talking));
    $("voice-off").hidden = !v.on;
    if (!v.on) { if (!v.error) status(""); return; }
    status(v.mode === "hands-free" ? "listening" : v.talking ? "talking…" : "hold to talk (or hold Space)");
  }

  $("voice-hands-free").addEventListener("click", () => start("hands-free"));
  $("voice-off").addEventListener("click", stop);
  const push = $("voice-push");
  push.addEventListener("pointerdown", async () => {
    await start("push");
    v.talking = true;
    show();
  });
  push.addEventListener("pointerup", release);
  push.addEventListener("pointerleave", release);
  document.addEventListener("keydown", (e) => {
    if (e.code === "Space" && v.on && v.mode === "push" && e.target === document.body && !e.repeat) {
      e.preventDefault();
      v.talking = true;
      show();
    }
  });
  document.addEventListener("keyup", (e) => { if (e.code === "Space") release(); });

  return {
    on: {
      voice(m) { if (!m.on && v.on) stop(); },
      "audio-out"(m) { play(m); },
      speaking(m) {
        v.stats.speaking = m.state === "start";
        if (m.state === "stop" && m.interrupted) {
          flush();
          v.stats.interrupted += 1;
          if (m.reply_to) {
            v.stopped.add(m.reply_to);
            v.stats.atStop[m.reply_to] = v.stats.byReply[m.reply_to] || 0;
          }
        }
      },
      heard(m) {
        if (m.echo) return;  // her own voice, heard back: not something said to her
        v.stats.heard.push(m.text);
        $("voice-caption").textContent = "";
        onHeard(m);
      },
      hearing(m) { $("voice-caption").textContent = m.text; },
    },
    switched() { if (v.on) send({ t: "voice", on: true, conversation: hex.conversation }); },
  };
}

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
    starting: null, pressed: false,
    stats: { framesSent: 0, bytesSent: 0, chunksIn: 0, bytesIn: 0, bytesPlayed: 0,
      interrupted: 0, heard: [], speaking: false, late: 0, byReply: {}, atStop: {} },
    stopped: [],  // the last replies interrupted: a chunk of one still on its way is not played
  };
  hex.voice = v;

  function status(text, error = false) {
    const el = $("voice-status");
    el.textContent = text;
    el.classList.toggle("error", error);
  }

  function start(mode) {
    // One microphone however often it is asked for (a double click, both buttons at once).
    v.starting = v.starting || open().finally(() => { v.starting = null; });
    return v.starting.then(() => {
      if (!v.on) return;
      v.mode = mode;
      v.talking = mode === "hands-free" || v.pressed;
      show();
    });
  }

  async function open() {
    if (v.on) return;
    try {
      v.stream = await navigator.mediaDevices.getUserMedia({
        audio: { echoCancellation: true, noiseSuppression: true, autoGainControl: true, channelCount: 1 },
      });
      // At the microphone's own rate (some browsers refuse a stream at another rate).
      const rate = v.stream.getAudioTracks()[0]?.getSettings().sampleRate;
      v.mic = rate ? new AudioContext({ sampleRate: rate }) : new AudioContext();
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
    send({ t: "voice", on: true, conversation: hex.conversation });
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
    v.pressed = false;
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
    if (v.stopped.includes(m.reply_to)) { v.stats.late += bytes.length; return; }
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
  push.addEventListener("pointerdown", (e) => {
    v.pressed = true;  // held until up, however long the microphone takes to open
    push.setPointerCapture(e.pointerId);
    start("push");
  });
  for (const up of ["pointerup", "pointercancel", "lostpointercapture"]) push.addEventListener(up, release);
  const typing = (e) => e.target instanceof HTMLInputElement || e.target instanceof HTMLTextAreaElement;
  document.addEventListener("keydown", (e) => {
    if (e.code === "Space" && v.on && v.mode === "push" && !typing(e) && !e.repeat) {
      e.preventDefault();  // not a click on the focused button
      v.pressed = v.talking = true;
      show();
    }
  });
  document.addEventListener("keyup", (e) => { if (e.code === "Space" && !typing(e)) release(); });
  window.addEventListener("blur", release);  // a key held while the window lost focus

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
            v.stopped = [...v.stopped.slice(-19), m.reply_to];
            v.stats.atStop[m.reply_to] = v.stats.byReply[m.reply_to] || 0;
          }
        }
      },
      heard(m) {
        if (m.echo) { $("voice-caption").textContent = ""; return; }  // her own voice, heard back
        v.stats.heard.push(m.text);
        $("voice-caption").textContent = "";
        onHeard(m);
      },
      hearing(m) { $("voice-caption").textContent = m.text; },
    },
    switched() {  // another conversation (or a reconnect): what plays for the old one stops
      flush();
      if (v.on) send({ t: "voice", on: true, conversation: hex.conversation });
    },
  };
}

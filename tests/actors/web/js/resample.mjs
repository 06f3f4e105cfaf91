// Runs the page's microphone worklet (actors/web/static/mic-worklet.js) outside a browser: a
// 440 Hz tone at each common capture rate through its process(), 128-sample blocks as the audio
// thread calls it. Prints one JSON line per rate: samples out, samples expected, samples that are
// not numbers, the tone's peak, and the largest step between two samples (a smooth 440 Hz tone at
// 16 kHz never steps more than about 2,900: a dropped or zeroed sample steps far more).
import fs from "fs";

const source = fs.readFileSync(process.argv[2], "utf8");
const seconds = 10;
for (const rate of [8000, 16000, 22050, 24000, 32000, 44100, 48000]) {
  const posted = [];
  let Mic = null;
  class AudioWorkletProcessor {
    constructor() { this.port = { postMessage: (buffer) => posted.push(new Int16Array(buffer)) }; }
  }
  new Function("sampleRate", "AudioWorkletProcessor", "registerProcessor", source)(
    rate, AudioWorkletProcessor, (name, cls) => { Mic = cls; });
  const mic = new Mic();
  let t = 0;
  for (let b = 0; b < (rate * seconds) / 128; b++) {
    const block = new Float32Array(128);
    for (let i = 0; i < 128; i++, t++) block[i] = 0.5 * Math.sin((2 * Math.PI * 440 * t) / rate);
    mic.process([[block]]);
  }
  const out = posted.flatMap((frame) => Array.from(frame));
  let peak = 0;
  let step = 0;
  let bad = 0;
  for (let n = 200; n < out.length; n++) {  // past the low-pass filter's start
    if (!Number.isFinite(out[n])) bad += 1;
    peak = Math.max(peak, Math.abs(out[n]));
    step = Math.max(step, Math.abs(out[n] - out[n - 1]));
  }
  const frames = posted.map((frame) => frame.length);
  console.log(JSON.stringify({ rate, out: out.length, expected: 16000 * seconds, bad, peak, step,
    frames: [...new Set(frames)] }));
}

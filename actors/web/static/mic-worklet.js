// The microphone at 16 kHz: the AudioWorklet resamples whatever rate the browser captures at
// (linear interpolation after a light low-pass) and posts 40 ms of PCM16 at a time.

const OUT_RATE = 16000;
const FRAME = 640; // 40 ms at 16 kHz

class Mic extends AudioWorkletProcessor {
  constructor() {
    super();
    this.step = sampleRate / OUT_RATE; // input samples per output sample
    this.pos = 0; // where the next output sample falls, in input samples past `last`
    this.last = 0; // the previous block's last (filtered) sample
    this.smooth = 0;
    this.out = new Int16Array(FRAME);
    this.n = 0;
  }

  process(inputs) {
    const channel = inputs[0] && inputs[0][0];
    if (!channel) return true;
    // A one-pole low-pass before decimation: less aliasing of hiss into the speech band.
    const alpha = 1 - Math.exp((-2 * Math.PI * 7000) / sampleRate);
    const x = new Float32Array(channel.length);
    for (let i = 0; i < channel.length; i++) {
      this.smooth += alpha * (channel[i] - this.smooth);
      x[i] = this.smooth;
    }
    // v[0] = last, v[k] = x[k - 1]: the output sample at p lies between v[floor p] and
    // v[floor p + 1] = x[floor p], which exists while p < x.length.
    while (this.pos < x.length) {
      const i = Math.floor(this.pos);
      const f = this.pos - i;
      const a = i === 0 ? this.last : x[i - 1];
      const b = x[i];
      const s = Math.max(-1, Math.min(1, a + (b - a) * f));
      this.out[this.n++] = s < 0 ? s * 32768 : s * 32767;
      if (this.n === FRAME) {
        this.port.postMessage(this.out.buffer, [this.out.buffer]);
        this.out = new Int16Array(FRAME);
        this.n = 0;
      }
      this.pos += this.step;
    }
    this.pos -= x.length;
    this.last = x[x.length - 1];
    return true;
  }
}

registerProcessor("hex-mic", Mic);

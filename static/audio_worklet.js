// AudioWorklet processors for the browser test call.
//  "mic-encoder": microphone at the context rate -> 8 kHz μ-law, posted in 20 ms frames
//  (160 bytes). A one-pole low-pass below 3.4 kHz, then linear interpolation to 8 kHz.
//  "player": plays PCM posted to it (already at the context rate); reports how many
//  samples have been played so the page can echo marks when playback reaches them,
//  and drops everything queued on "clear" (barge-in).

function linearToUlaw(sample) {  // G.711 μ-law, int16 in, byte out
  const BIAS = 0x84, CLIP = 32635;
  let s = Math.max(-32768, Math.min(32767, Math.round(sample * 32767)));
  const sign = s < 0 ? 0x80 : 0;
  if (s < 0) s = -s;
  if (s > CLIP) s = CLIP;
  s += BIAS;
  let exponent = 7;
  for (let mask = 0x4000; (s & mask) === 0 && exponent > 0; mask >>= 1) exponent--;
  const mantissa = (s >> (exponent + 3)) & 0x0f;
  return ~(sign | (exponent << 4) | mantissa) & 0xff;
}

class MicEncoder extends AudioWorkletProcessor {
  constructor() {
    super();
    this.step = sampleRate / 8000;   // input samples per output sample
    this.pos = 0;                     // fractional read position into the input stream
    this.prev = 0;                    // last filtered input sample
    this.lp = 0;
    const rc = 1 / (2 * Math.PI * 3400), dt = 1 / sampleRate;
    this.alpha = dt / (rc + dt);
    this.frame = new Uint8Array(160);
    this.fill = 0;
  }
  process(inputs) {
    const input = inputs[0] && inputs[0][0];
    if (!input) return true;
    for (let i = 0; i < input.length; i++) {
      this.lp += this.alpha * (input[i] - this.lp);
      const cur = this.lp;
      // Emit every output sample whose position falls between prev (i-1) and cur (i).
      while (this.pos <= 1) {
        const v = this.prev + (cur - this.prev) * this.pos;
        this.frame[this.fill++] = linearToUlaw(v);
        if (this.fill === 160) {
          this.port.postMessage(this.frame.slice(0));
          this.fill = 0;
        }
        this.pos += this.step;
      }
      this.pos -= 1;
      this.prev = cur;
    }
    return true;
  }
}

class Player extends AudioWorkletProcessor {
  constructor() {
    super();
    this.chunks = [];
    this.offset = 0;
    this.played = 0;
    this.sinceReport = 0;
    this.port.onmessage = (ev) => {
      if (ev.data === "clear") { this.chunks = []; this.offset = 0; this.port.postMessage({played: this.played, cleared: true}); }
      else this.chunks.push(ev.data);
    };
  }
  process(_inputs, outputs) {
    const out = outputs[0][0];
    let i = 0;
    while (i < out.length && this.chunks.length) {
      const chunk = this.chunks[0];
      const n = Math.min(out.length - i, chunk.length - this.offset);
      out.set(chunk.subarray(this.offset, this.offset + n), i);
      i += n; this.offset += n; this.played += n;
      if (this.offset >= chunk.length) { this.chunks.shift(); this.offset = 0; }
    }
    for (let c = 1; c < outputs[0].length; c++) outputs[0][c].set(out);
    this.sinceReport += out.length;
    if (this.sinceReport >= 960) { this.sinceReport = 0; this.port.postMessage({played: this.played}); }
    return true;
  }
}

registerProcessor("mic-encoder", MicEncoder);
registerProcessor("player", Player);

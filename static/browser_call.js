// The browser test call: microphone -> 8 kHz μ-law -> Twilio Media Streams messages over
// a WebSocket; agent audio back -> speakers; marks echoed when playback reaches them;
// "clear" drops what is queued. The server only ever gives this page a one-call token.
(function () {
  "use strict";
  const panel = document.getElementById("call-panel");
  const agent = panel.dataset.agent;
  const workletUrl = document.getElementById("call-script").dataset.worklet;
  const csrf = document.querySelector('meta[name="csrf-token"]').content;
  const $ = (id) => document.getElementById(id);
  const startBtn = $("call-start"), hangupBtn = $("call-hangup"), status = $("call-status");

  // μ-law byte -> float in [-1, 1] (G.711 decode table built once).
  const ULAW = new Float32Array(256);
  for (let i = 0; i < 256; i++) {
    const u = ~i & 0xff, sign = u & 0x80, exponent = (u >> 4) & 7, mantissa = u & 0x0f;
    let s = ((mantissa << 3) + 0x84) << exponent; s -= 0x84;
    ULAW[i] = (sign ? -s : s) / 32768;
  }
  const b64encode = (bytes) => { let s = ""; for (const b of bytes) s += String.fromCharCode(b); return btoa(s); };
  const b64decode = (text) => { const s = atob(text); const out = new Uint8Array(s.length); for (let i = 0; i < s.length; i++) out[i] = s.charCodeAt(i); return out; };

  let call = null;

  function setStatus(text, cls) { status.textContent = text; status.className = cls || ""; }

  async function start() {
    startBtn.disabled = true;
    setStatus("Starting…");
    let ticket;
    try {
      const r = await fetch(`/agents/${encodeURIComponent(agent)}/call/start`, {method: "POST", headers: {"X-CSRF-Token": csrf}});
      if (!r.ok) throw new Error((await r.json()).detail || r.statusText);
      ticket = await r.json();
    } catch (e) { setStatus("Could not start the call: " + e.message, "err"); startBtn.disabled = false; return; }
    let media;
    try {
      media = await navigator.mediaDevices.getUserMedia({audio: {echoCancellation: true, noiseSuppression: true, autoGainControl: true}});
    } catch (e) { setStatus("No microphone: " + e.message + ". Allow microphone access and try again.", "err"); startBtn.disabled = false; return; }
    const ctx = new AudioContext();
    await ctx.audioWorklet.addModule(workletUrl);
    const mic = new AudioWorkletNode(ctx, "mic-encoder");
    const player = new AudioWorkletNode(ctx, "player", {outputChannelCount: [1]});
    ctx.createMediaStreamSource(media).connect(mic);
    player.connect(ctx.destination);
    const proto = location.protocol === "https:" ? "wss:" : "ws:";
    const ws = new WebSocket(`${proto}//${location.host}${ticket.media_path}`);
    call = {ticket, ws, ctx, media, mic, player, seq: 1, chunk: 0, sentBytes: 0, heardBytes: 0,
            queued: 0, played: 0, marks: [], clears: 0, poll: null, ended: false, inSample: 0};
    ws.onopen = () => {
      send({event: "connected", protocol: "Call", version: "1.0.0"});
      send({event: "start", sequenceNumber: String(call.seq++), streamSid: ticket.stream_sid,
            start: {accountSid: ticket.account_sid, streamSid: ticket.stream_sid, callSid: ticket.call_sid,
                    tracks: ["inbound"], mediaFormat: {encoding: "audio/x-mulaw", sampleRate: 8000, channels: 1},
                    customParameters: {token: ticket.token, agent: ticket.agent}}});
      setStatus("Connected: speak when you are ready.", "ok");
      hangupBtn.disabled = false;
      call.poll = setInterval(pollTranscript, 1000);
    };
    ws.onmessage = (ev) => onMessage(JSON.parse(ev.data));
    ws.onclose = (ev) => finish(ev.reason ? "Call ended: " + ev.reason : "Call ended.");
    ws.onerror = () => setStatus("The media connection failed.", "err");
    mic.port.onmessage = (ev) => {
      if (ws.readyState !== WebSocket.OPEN) return;
      const frame = ev.data;
      send({event: "media", sequenceNumber: String(call.seq++), streamSid: ticket.stream_sid,
            media: {track: "inbound", chunk: String(++call.chunk), timestamp: String(call.chunk * 20), payload: b64encode(frame)}});
      call.sentBytes += frame.length;
      $("call-sent").textContent = call.sentBytes;
    };
    player.port.onmessage = (ev) => { call.played = ev.data.played; echoMarks(); };
  }

  function send(msg) { if (call && call.ws.readyState === WebSocket.OPEN) call.ws.send(JSON.stringify(msg)); }

  function onMessage(msg) {
    if (!call || msg.streamSid !== call.ticket.stream_sid) return;
    if (msg.event === "media") {
      const bytes = b64decode(msg.media.payload);
      call.heardBytes += bytes.length;
      const heard = $("call-heard");
      heard.textContent = call.heardBytes; heard.dataset.bytes = call.heardBytes;
      $("call-heard-s").textContent = (call.heardBytes / 8000).toFixed(1);
      // 8 kHz -> context rate by linear interpolation.
      const ratio = call.ctx.sampleRate / 8000;
      const out = new Float32Array(Math.round(bytes.length * ratio));
      for (let i = 0; i < out.length; i++) {
        const pos = i / ratio, k = Math.floor(pos), f = pos - k;
        const a = ULAW[bytes[Math.min(k, bytes.length - 1)]], b = ULAW[bytes[Math.min(k + 1, bytes.length - 1)]];
        out[i] = a + (b - a) * f;
      }
      call.player.port.postMessage(out);
      call.queued += out.length;
    } else if (msg.event === "mark") {
      call.marks.push({name: msg.mark.name, at: call.queued});
      echoMarks();
    } else if (msg.event === "clear") {
      call.player.port.postMessage("clear");
      call.clears++;
      $("call-clears").textContent = call.clears;
      // Twilio returns every pending mark at once when the buffer is cleared.
      call.queued = call.played;
      for (const m of call.marks) sendMark(m.name);
      call.marks = [];
    }
  }

  function echoMarks() {
    while (call && call.marks.length && call.marks[0].at <= call.played) sendMark(call.marks.shift().name);
  }
  function sendMark(name) {
    send({event: "mark", sequenceNumber: String(call.seq++), streamSid: call.ticket.stream_sid, mark: {name}});
  }

  async function pollTranscript() {
    if (!call) return;
    const r = await fetch(`/agents/${encodeURIComponent(agent)}/call/${call.ticket.call_sid}/transcript`);
    if (!r.ok) return;
    const data = await r.json();
    renderTranscript(data);
    if (data.call_id) $("call-record").innerHTML = `<a href="/calls/${data.call_id}">Open the call record</a>`;
  }

  function renderTranscript(data) {
    const table = $("transcript");
    table.innerHTML = "";
    const rows = data.turns.length ? data.turns : [];
    for (const t of rows) {
      const tr = table.insertRow();
      tr.className = "turn-" + t.role;
      tr.insertCell().textContent = t.role === "user" ? "you" : "agent";
      const cell = tr.insertCell();
      cell.textContent = t.text + (t.interrupted ? " (interrupted)" : "");
      if (t.interrupted) cell.className = "interrupted";
    }
    for (const t of data.tools) {
      const tr = table.insertRow();
      tr.insertCell().textContent = "tool";
      tr.insertCell().textContent = `${t.name}(${t.arguments}) → ${t.result}`;
    }
    if (!rows.length && !data.tools.length) table.insertRow().insertCell().textContent = "Nothing said yet.";
  }

  function finish(text) {
    if (!call || call.ended) return;
    call.ended = true;
    clearInterval(call.poll);
    setStatus(text);
    hangupBtn.disabled = true; startBtn.disabled = false;
    call.media.getTracks().forEach(t => t.stop());
    const ctx = call.ctx;
    setTimeout(() => ctx.close(), 300);
    setTimeout(pollTranscript, 800);
  }

  function hangUp() {
    if (!call) return;
    send({event: "stop", sequenceNumber: String(call.seq++), streamSid: call.ticket.stream_sid,
          stop: {accountSid: call.ticket.account_sid, callSid: call.ticket.call_sid}});
    call.ws.close(1000, "caller hung up");
    finish("You hung up.");
  }

  startBtn.addEventListener("click", start);
  hangupBtn.addEventListener("click", hangUp);
})();

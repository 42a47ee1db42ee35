// The VoxServe page: a Voice Live client in plain JavaScript. The microphone goes up as PCM16
// at 24 kHz; the answer's audio is scheduled for gapless playback and stopped at once when the
// user starts talking; the mouth shows the viseme whose offset the playback has reached.

const RATE = 24000;
const $ = (id) => document.getElementById(id);

// Mouth size (rx, ry) per Azure viseme id 0-21: open vowels wide and tall, rounded ones narrow,
// closures (p b m) shut.
const MOUTH = [
  [24, 2], [22, 12], [22, 17], [17, 15], [23, 10], [16, 10], [26, 7], [11, 9], [14, 13],
  [20, 15], [18, 13], [23, 15], [21, 9], [14, 8], [21, 8], [25, 4], [15, 7], [22, 6],
  [24, 4], [23, 5], [21, 8], [24, 1],
];

let ws = null;
let ctx = null;
let mic = null;
let playhead = 0;          // context time the next audio piece starts at
let sources = [];          // scheduled pieces, stopped on barge-in
const items = new Map();   // item id -> {start, ms, visemes: [{t, id}], line, stopped}
let speaking = null;       // the item whose audio is playing or scheduled
let turnEnded = null;      // performance.now() when the server said the user stopped
let firstAudio = null;
// What the page has done, for a test (or a curious user) to read from the console.
window.voxserve = { audioSeconds: 0, visemes: [] };

function setStatus(text, state) {
  $("status").textContent = text;
  $("status").dataset.state = state;
}

function line(kind, text) {
  const p = document.createElement("p");
  p.className = kind;
  p.textContent = text;
  $("transcript").append(p);
  p.scrollIntoView({ block: "end" });
  return p;
}

function item(id) {
  if (!items.has(id)) items.set(id, { start: null, ms: 0, visemes: [], line: null, stopped: false });
  return items.get(id);
}

function textOf(id, kind) {
  // the transcript line of an item (the user's or the agent's), made on its first text
  const it = item(id);
  it.line = it.line || line(kind, "");
  return it.line;
}

function send(event) {
  if (ws && ws.readyState === WebSocket.OPEN) ws.send(JSON.stringify(event));
}

function pcm16Base64(samples) {
  const bytes = new Uint8Array(samples.length * 2);
  const view = new DataView(bytes.buffer);
  for (let i = 0; i < samples.length; i++) {
    const s = Math.max(-1, Math.min(1, samples[i]));
    view.setInt16(2 * i, s < 0 ? s * 0x8000 : s * 0x7fff, true);
  }
  let text = "";
  for (let i = 0; i < bytes.length; i += 0x8000) {
    text += String.fromCharCode(...bytes.subarray(i, i + 0x8000));
  }
  return btoa(text);
}

function samplesOf(b64) {
  const raw = atob(b64);
  const out = new Float32Array(raw.length >> 1);
  for (let i = 0; i < out.length; i++) {
    let v = raw.charCodeAt(2 * i) | (raw.charCodeAt(2 * i + 1) << 8);
    if (v >= 0x8000) v -= 0x10000;
    out[i] = v / 0x8000;
  }
  return out;
}

function play(id, samples) {
  const it = item(id);
  const buffer = ctx.createBuffer(1, samples.length, RATE);
  buffer.copyToChannel(samples, 0);
  const source = ctx.createBufferSource();
  source.buffer = buffer;
  source.connect(ctx.destination);
  if (it.start === null || it.stopped) {
    // Offsets count from the item's first audio, dropped audio included: anchor the timeline so
    // that this piece (which starts `it.ms` into the item) plays now. A held answer that the
    // server resumes after a false interruption continues this way too.
    playhead = Math.max(ctx.currentTime + 0.03, playhead);
    it.start = playhead - it.ms / 1000;
    it.stopped = false;
    speaking = id;
  }
  source.start(playhead);
  playhead += buffer.duration;
  it.ms += 1000 * buffer.duration;
  window.voxserve.audioSeconds += buffer.duration;
  sources.push(source);
  source.onended = () => { sources = sources.filter((s) => s !== source); };
}

function stopPlayback() {
  // The user talks over the agent: silence now. The server models what was played (it cuts
  // the answer there if the interruption is real) and resumes the answer if it was not.
  for (const s of sources) s.stop();
  sources = [];
  if (speaking !== null) items.get(speaking).stopped = true;
  speaking = null;
  playhead = ctx ? ctx.currentTime : 0;
}

function animate() {
  let viseme = 0;
  const it = speaking !== null ? items.get(speaking) : null;
  if (it && it.start !== null) {
    const at = 1000 * (ctx.currentTime - it.start);
    for (const v of it.visemes) {
      if (v.t > at) break;
      viseme = v.id;
    }
    if (at > it.ms) viseme = 0;
  }
  const mouth = $("mouth");
  if (mouth.dataset.viseme !== String(viseme)) {
    const [rx, ry] = MOUTH[viseme] || MOUTH[0];
    mouth.setAttribute("rx", rx);
    mouth.setAttribute("ry", ry);
    mouth.dataset.viseme = String(viseme);
    window.voxserve.visemes.push(viseme);
  }
}

function onEvent(e) {
  switch (e.type) {
    case "session.updated":
      setStatus("listening", "live");
      break;
    case "input_audio_buffer.speech_started":
      stopPlayback();
      break;
    case "input_audio_buffer.speech_stopped":
      turnEnded = performance.now();
      firstAudio = null;
      break;
    case "conversation.item.input_audio_transcription.delta":
      textOf(e.item_id, "user").textContent += e.delta;
      break;
    case "conversation.item.input_audio_transcription.completed":
      textOf(e.item_id, "user").textContent = e.transcript;
      break;
    case "response.audio_transcript.delta":
      textOf(e.item_id, "agent").textContent += e.delta;
      break;
    case "response.audio.delta":
      if (firstAudio === null && turnEnded !== null) {
        firstAudio = performance.now() - turnEnded;
        $("latency").textContent = `First audio ${Math.round(firstAudio)} ms after the end of your turn`;
      }
      if (ctx) play(e.item_id, samplesOf(e.delta));  // not after Stop
      break;
    case "response.animation_viseme.delta":
      item(e.item_id).visemes.push({ t: e.audio_offset_ms, id: e.viseme_id });
      break;
    case "voxserve.response.timing":
      if (e.ttfa_ms !== null && firstAudio !== null) {
        $("latency").textContent = `First audio ${Math.round(firstAudio)} ms after the end of ` +
          `your turn (server: ${Math.round(e.ttfa_ms)} ms from the end of your speech)`;
      }
      break;
    case "error":
      line("error", `${e.error.code || e.error.type}: ${e.error.message}`);
      break;
    default:
      break;
  }
}

function sessionUpdate() {
  return {
    type: "session.update",
    session: {
      modalities: ["text", "audio", "animation"],
      voice: $("voice").value,
      input_audio_format: "pcm16",
      output_audio_format: "pcm16",
      input_audio_transcription: { model: "whisper-1" },
      turn_detection: { type: "server_vad", silence_duration_ms: 500, auto_truncate: true },
      animation: { outputs: ["viseme_id"] },
      output_audio_timestamp_types: ["word"],
      voxserve: { response_timing: true },
    },
  };
}

async function start() {
  $("start").disabled = true;
  setStatus("starting the microphone", "idle");
  try {
    ctx = new AudioContext({ sampleRate: RATE });
    await ctx.audioWorklet.addModule("/web/capture-worklet.js");
    mic = await navigator.mediaDevices.getUserMedia({
      audio: { channelCount: 1, echoCancellation: true, noiseSuppression: true },
    });
    const capture = new AudioWorkletNode(ctx, "capture");
    const mute = ctx.createGain();  // the worklet must reach the destination to run; silently
    mute.gain.value = 0;
    ctx.createMediaStreamSource(mic).connect(capture).connect(mute).connect(ctx.destination);
    const url = new URL("/voice-live/realtime", location.href);
    url.protocol = location.protocol === "https:" ? "wss:" : "ws:";
    if ($("key").value) url.searchParams.set("api-key", $("key").value);
    ws = new WebSocket(url);
    ws.onopen = () => send(sessionUpdate());
    ws.onmessage = (m) => onEvent(JSON.parse(m.data));
    ws.onclose = (c) => {
      setStatus(c.code === 1000 ? "closed" : `closed (${c.code} ${c.reason})`,
                c.code === 1000 ? "idle" : "error");
      stop();
    };
    capture.port.onmessage = (m) => send({ type: "input_audio_buffer.append",
                                           audio: pcm16Base64(m.data) });
    $("stop").disabled = false;
    setStatus("connecting", "idle");
  } catch (err) {
    setStatus(`could not start: ${err.message}`, "error");
    $("start").disabled = false;
  }
}

function stop() {
  if (ws && ws.readyState <= WebSocket.OPEN) ws.close(1000);
  if (mic) mic.getTracks().forEach((t) => t.stop());
  if (ctx) {
    stopPlayback();
    ctx.close();  // the next Start makes its own, whose clock starts at 0 again
    ctx = null;
    playhead = 0;
  }
  $("stop").disabled = true;
  $("start").disabled = false;
}

async function loadVoices() {
  const answer = await fetch("/voices");
  const { voices, default: chosen } = await answer.json();
  for (const name of voices) {
    const option = new Option(name, name, false, name === chosen);
    $("voice").append(option);
  }
}

$("voice").addEventListener("change", () => {
  send({ type: "session.update", session: { voice: $("voice").value } });
});
$("start").addEventListener("click", start);
$("stop").addEventListener("click", stop);
setInterval(animate, 15);
loadVoices();

// The page of `streamdiar serve`: the browser's microphone, captured by an AudioWorklet in a
// 16 kHz AudioContext, or a chosen file, decoded at 16 kHz and sent at real-time pace, streamed
// to /v1/stream as 32-bit float PCM; the server's JSON messages drawn as a timeline, a list of
// turns and each speaker's talk time. No build step, no dependencies. A page opened with
// ?token=T passes T on to the server.
"use strict";

const COLOURS = ["#0a84ff", "#ff375f", "#30d158", "#ff9f0a", "#bf5af2", "#64d2ff", "#ffd60a", "#ac8e68"];
const SPAN_SECONDS = 60; // the timeline shows the whole session up to this long, then its last minute

// what the page has seen, also for tests: window.streamdiar.turns, .ended, .error
const state = (window.streamdiar = { turns: [], statuses: [], ready: null, ended: null, error: null });
const colours = new Map();
let socket = null;
let audio = null; // {context, stream, node} of the microphone
let file = null; // {context, timer} of a file being streamed
let unsent = []; // the microphone's blocks captured before the socket opened
let now = 0; // seconds of audio the server has received

const $ = (id) => document.getElementById(id);

function colour(speaker) {
  if (!colours.has(speaker)) colours.set(speaker, COLOURS[colours.size % COLOURS.length]);
  return colours.get(speaker);
}

function seconds(value) {
  return value.toFixed(1) + " s";
}

function reset() {
  $("start").disabled = true;
  $("file").disabled = true;
  Object.assign(state, { turns: [], statuses: [], ready: null, ended: null, error: null });
  unsent = [];
  colours.clear();
  now = 0;
  $("turns").querySelector("tbody").replaceChildren();
  draw();
}

// The microphone starts only once its worklet is loaded, so that its first block is captured;
// blocks captured while the socket is still opening wait in `unsent` and follow the start
// message, so that a slow connection loses none of the first words.
async function start() {
  reset();
  const context = new AudioContext({ sampleRate: 16000 });
  try {
    await context.audioWorklet.addModule("/static/capture-worklet.js");
    const node = new AudioWorkletNode(context, "streamdiar-capture", {
      processorOptions: { frames: Math.round(context.sampleRate / 10) },
    });
    const stream = await navigator.mediaDevices.getUserMedia({
      audio: { channelCount: 1, echoCancellation: false, noiseSuppression: false, autoGainControl: false },
    });
    audio = { context, stream, node };
    node.port.onmessage = (message) => sendAudio(message.data.buffer);
    connect(context.sampleRate);
    context.createMediaStreamSource(stream).connect(node);
  } catch (error) {
    fail("cannot capture the microphone: " + error.message);
    stopAudio();
    if (context.state !== "closed") context.close();
    $("start").disabled = false;
    $("file").disabled = false;
  }
}

// A chosen file, decoded and resampled to 16 kHz by the browser, sent in blocks of 0.1 s as a
// microphone would send it; then the end of the stream.
async function streamFile() {
  const chosen = $("file").files[0];
  if (!chosen) return;
  reset();
  try {
    const context = new AudioContext({ sampleRate: 16000 });
    const decoded = await context.decodeAudioData(await chosen.arrayBuffer());
    const samples = decoded.getChannelData(0);
    const block = Math.round(context.sampleRate / 10);
    let sent = 0;
    file = { context, timer: null };
    connect(context.sampleRate, chosen.name);
    file.timer = setInterval(() => {
      if (!socket || socket.readyState !== WebSocket.OPEN) return;
      socket.send(samples.slice(sent, sent + block));
      sent += block;
      if (sent >= samples.length) stop();
    }, 100);
  } catch (error) {
    fail("cannot read the file: " + error.message);
    stopAudio();
    $("start").disabled = false;
    $("file").disabled = false;
  }
}

function sendAudio(buffer) {
  if (socket && socket.readyState === WebSocket.OPEN) socket.send(buffer);
  else if (socket && socket.readyState === WebSocket.CONNECTING) unsent.push(buffer);
}

function connect(sampleRate, name = "browser") {
  const scheme = location.protocol === "https:" ? "wss:" : "ws:";
  const token = new URLSearchParams(location.search).get("token");
  const query = token ? "?" + new URLSearchParams({ token }) : "";
  socket = new WebSocket(`${scheme}//${location.host}/v1/stream${query}`);
  socket.onopen = () => {
    socket.send(JSON.stringify({ type: "start", sample_rate: sampleRate, encoding: "pcm_f32le", channels: 1, name }));
    unsent.forEach((buffer) => socket.send(buffer));
    unsent = [];
    $("stop").disabled = false;
    $("status").textContent = "connected";
  };
  socket.onmessage = (message) => handle(JSON.parse(message.data));
  socket.onclose = (event) => {
    stopAudio();
    socket = null;
    $("start").disabled = false;
    $("file").disabled = false;
    $("stop").disabled = true;
    if (!state.ended && !state.error) fail(`connection closed (code ${event.code})`);
  };
}

function stop() {
  $("stop").disabled = true;
  stopAudio();
  if (socket && socket.readyState === WebSocket.OPEN) {
    socket.send(JSON.stringify({ type: "end" }));
    $("status").textContent = "finishing the last turns…";
  }
}

function stopAudio() {
  if (file) {
    clearInterval(file.timer);
    file.context.close();
    file = null;
  }
  if (!audio) return;
  audio.node.port.onmessage = null;
  audio.stream.getTracks().forEach((track) => track.stop());
  audio.context.close();
  audio = null;
}

function fail(message) {
  state.error = message;
  $("status").textContent = "error: " + message;
}

function handle(event) {
  switch (event.type) {
    case "ready":
      state.ready = event;
      $("status").textContent = `connected: ${event.backend} on ${event.device}, latency ${event.latency} s`;
      break;
    case "turn":
      state.turns.push(event);
      addTurnRow(event);
      draw();
      break;
    case "status":
      state.statuses.push(event);
      now = event.received;
      $("speaking").textContent = event.speaking.length ? event.speaking.join(", ") : "nobody";
      $("status").textContent =
        `received ${seconds(event.received)}, lag ${seconds(event.lag)}, dropped ${seconds(event.dropped)}`;
      draw();
      break;
    case "named":
      $("status").textContent = `${event.label} is ${event.speaker}`;
      break;
    case "summary":
      state.ended = event;
      now = Math.max(now, event.received);
      $("speaking").textContent = "nobody";
      $("summary").textContent =
        `${seconds(event.received)} received, ${seconds(event.dropped)} dropped, ` +
        `${Object.keys(event.speakers).length} speakers`;
      $("status").textContent = "done";
      draw();
      break;
    case "error":
      fail(event.message);
      break;
  }
}

function addTurnRow(turn) {
  const row = document.createElement("tr");
  row.innerHTML = `<td>${turn.start.toFixed(2)}</td><td>${turn.end.toFixed(2)}</td><td></td>`;
  const cell = row.lastChild;
  const swatch = document.createElement("span");
  swatch.className = "swatch";
  swatch.style.background = colour(turn.speaker);
  cell.append(swatch, turn.speaker);
  // turns come in the order they are committed: listed by start
  row.dataset.start = turn.start;
  const body = $("turns").tBodies[0];
  const later = [...body.rows].find((other) => Number(other.dataset.start) > turn.start);
  body.insertBefore(row, later || null);
  if (!later) body.scrollTop = body.scrollHeight;
}

function draw() {
  const end = Math.max(now, ...state.turns.map((turn) => turn.end), 1);
  const first = Math.max(0, end - SPAN_SECONDS);
  const span = Math.min(SPAN_SECONDS, end);
  const talk = new Map();
  for (const turn of state.turns) talk.set(turn.speaker, (talk.get(turn.speaker) || 0) + turn.end - turn.start);
  const timeline = $("timeline");
  timeline.replaceChildren();
  for (const speaker of [...talk.keys()].sort()) {
    const lane = document.createElement("div");
    lane.className = "lane";
    const label = document.createElement("span");
    label.className = "label";
    label.textContent = speaker;
    lane.append(label);
    for (const turn of state.turns) {
      if (turn.speaker !== speaker || turn.end < first) continue;
      const bar = document.createElement("div");
      bar.className = "bar";
      const left = Math.max(turn.start, first) - first;
      bar.style.left = (100 * left) / span + "%";
      bar.style.width = (100 * (turn.end - first - left)) / span + "%";
      bar.style.background = colour(speaker);
      lane.append(bar);
    }
    timeline.append(lane);
  }
  $("axis").innerHTML = `<span>${seconds(first)}</span><span>${seconds(first + span)}</span>`;
  const list = $("talk");
  list.replaceChildren();
  for (const [speaker, total] of [...talk.entries()].sort()) {
    const item = document.createElement("li");
    const swatch = document.createElement("span");
    swatch.className = "swatch";
    swatch.style.background = colour(speaker);
    item.append(swatch, `${speaker}: ${seconds(total)}`);
    list.append(item);
  }
}

$("start").addEventListener("click", start);
$("stop").addEventListener("click", stop);
$("file").addEventListener("change", streamFile);
draw();

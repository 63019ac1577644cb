// The demo meeting page: microphone → /ws/audio, captions from /ws/captions, people from /ws/signaling.
const RATE = 16000;
const FRAME = RATE / 10; // send 100 ms of PCM per message

const $ = (selector) => document.querySelector(selector);
const params = new URLSearchParams(location.search);
const form = $("#join");
// The host token `dragoman up` prints rides in the fragment, which browsers never send to a server
// (so no access log has it). It is kept for this tab only and taken out of the address bar.
const hostToken = new URLSearchParams(location.hash.slice(1)).get("token") || sessionStorage.getItem("dragoman-host");
if (hostToken) sessionStorage.setItem("dragoman-host", hostToken);
if (location.hash) history.replaceState(null, "", location.pathname + location.search);

// The pickers offer only what the server really serves (GET /v1/languages); a listening language that
// the chosen speaking language reaches only through a pivot says so.
const names = new Intl.DisplayNames([navigator.language || "en"], { type: "language" });
let catalogue = { languages: {} };

function fillPickers() {
  const { speak, listen } = form.elements;
  const chosen = { speak: speak.value || params.get("speak") || "en", listen: listen.value || params.get("listen") };
  speak.replaceChildren();
  listen.replaceChildren();
  for (const [code, support] of Object.entries(catalogue.languages)) {
    if (support.speak) speak.add(new Option(`${names.of(code)} (${code})`, code));
  }
  speak.value = chosen.speak;
  const from = catalogue.languages[speak.value];
  for (const [code, support] of Object.entries(catalogue.languages)) {
    if (!support.listen) continue;
    const route = from && from.translations[code];
    const reachable = code === speak.value || route;
    const label = `${names.of(code)} (${code})${route && route.via ? ` · via ${names.of(route.via)}` : ""}`;
    const option = new Option(reachable ? label : `${label} · not from ${speak.value}`, code);
    option.dataset.route = route ? (route.via ? "pivot" : "direct") : code === speak.value ? "same" : "none";
    listen.add(option);
  }
  listen.value = chosen.listen && catalogue.languages[chosen.listen] ? chosen.listen : speak.value;
}

const ready = fetch("/v1/languages")
  .then((response) => response.json())
  .then((body) => {
    catalogue = body;
    fillPickers();
    for (const [key, value] of params) if (form.elements[key] && key !== "speak") form.elements[key].value = value;
    form.elements.speak.addEventListener("change", fillPickers);
  });

function showError(text) {
  const box = $("#error");
  box.textContent = text;
  box.hidden = false;
}

function socket(kind, room, token, query = {}) {
  const q = new URLSearchParams({ token, ...query });
  const scheme = location.protocol === "https:" ? "wss" : "ws";
  const ws = new WebSocket(`${scheme}://${location.host}/ws/${kind}/${encodeURIComponent(room)}?${q}`);
  ws.addEventListener("close", (event) => {
    if (event.code === 4001) showError(`Not allowed in this room (${event.reason || "bad token"}).`);
    else if (event.code !== 1000) showError(`The ${kind} connection closed (${event.code} ${event.reason}).`);
  });
  return ws;
}

// The host token (room "*") mints a participant token for the name entered: a user id of its own
// (two people may share a name), the name for display, valid for a working day.
async function tokenFor(name) {
  if (!hostToken) throw new Error("Open the link `dragoman up` printed: it carries a token.");
  const response = await fetch("/v1/tokens", {
    method: "POST",
    headers: { Authorization: `Bearer ${hostToken}`, "Content-Type": "application/json" },
    body: JSON.stringify({ name, room: form.elements.room.value }),
  });
  if (!response.ok) throw new Error(`Could not join: ${(await response.json()).detail}`);
  return (await response.json()).token;
}

const captions = new Map(); // utterance id + language → <li>
function showCaption(c) {
  const key = `${c.utterance_id}/${c.language}`;
  let item = captions.get(key);
  if (!item) {
    item = document.createElement("li");
    item.innerHTML = '<span class="who"></span><span class="lang"></span><span class="text"></span> <span class="tentative"></span>';
    $("#captions ol").append(item);
    captions.set(key, item);
  }
  item.className = c.is_final ? "final" : "partial";
  item.querySelector(".who").textContent = c.speaker_id;
  item.querySelector(".lang").textContent = c.language === c.source_language ? c.language : `${c.source_language}→${c.language}`;
  item.querySelector(".text").textContent = c.text;
  // Words not confirmed yet (PROTOCOL.md proposal): shown at once, in grey, and replaced by the next caption.
  item.querySelector(".tentative").textContent = c.is_final ? "" : c.tentative || "";
}

function showParticipants(list) {
  $("#participants").replaceChildren(
    ...list.map((p) => Object.assign(document.createElement("li"), { textContent: `${p.name || p.user_id} (${p.speak} → ${p.listen})` })),
  );
}

// Translated speech: 16 kHz int16 chunks, played back to back.
function player(context) {
  let playAt = 0;
  return (bytes) => {
    const samples = new Int16Array(bytes);
    const buffer = context.createBuffer(1, samples.length, RATE);
    buffer.getChannelData(0).set(Float32Array.from(samples, (s) => s / 32768));
    const source = context.createBufferSource();
    source.buffer = buffer;
    source.connect(context.destination);
    playAt = Math.max(playAt, context.currentTime);
    source.start(playAt);
    playAt += buffer.duration;
  };
}

async function join(event) {
  event.preventDefault();
  const { name, room, speak, listen } = Object.fromEntries(new FormData(form));
  try {
    const token = await tokenFor(name);
    const context = new AudioContext({ sampleRate: RATE });
    const microphone = await navigator.mediaDevices.getUserMedia({ audio: { channelCount: 1, echoCancellation: true } });
    await context.audioWorklet.addModule("/static/capture-worklet.js");
    const capture = new AudioWorkletNode(context, "capture");
    context.createMediaStreamSource(microphone).connect(capture);

    const audio = socket("audio", room, token, { speak, listen });
    audio.binaryType = "arraybuffer";
    const play = player(context);
    audio.addEventListener("message", (m) => {
      if (typeof m.data !== "string") return play(m.data);
      const message = JSON.parse(m.data);
      if (message.type === "session") $("#status").textContent = `in ${message.room_id} as ${name}`;
      if (message.type === "error") showError(`${message.code}: ${message.message}`);
      if (message.type === "language_unreachable") showError(message.message);
    });
    let pending = new Int16Array(0);
    capture.port.onmessage = ({ data }) => {
      const next = new Int16Array(pending.length + data.length);
      next.set(pending);
      next.set(Int16Array.from(data, (s) => Math.max(-32768, Math.min(32767, s * 32768))), pending.length);
      pending = next;
      while (pending.length >= FRAME && audio.readyState === WebSocket.OPEN) {
        audio.send(pending.slice(0, FRAME).buffer);
        pending = pending.slice(FRAME);
      }
    };

    socket("captions", room, token, { language: listen }).addEventListener("message", (m) => {
      const caption = JSON.parse(m.data);
      if (caption.event === "caption") showCaption(caption);
    });
    socket("signaling", room, token).addEventListener("message", (m) => {
      const message = JSON.parse(m.data);
      if (message.type === "participants") showParticipants(message.participants);
    });
    form.hidden = true;
    $("main").hidden = false;
  } catch (error) {
    showError(error.message);
  }
}

form.addEventListener("submit", join);
ready.then(() => {
  if (params.get("autojoin")) form.requestSubmit();
});

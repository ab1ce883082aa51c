"use strict";
// The join page: self-preview, "Deltag", then one tile per remote participant.
// Standard WebRTC only (unified plan). The browser makes every offer; the server answers and
// tells us which participant each receiving transceiver (by mid) carries.
(() => {
  const TEXTS = window.SCREENVISIT_TEXTS;
  const $ = (id) => document.getElementById(id);
  const visitId = document.body.dataset.visit;
  const joinedKey = `screenvisit-joined-${visitId}`;
  const token = location.hash.slice(1);

  const state = {
    lang: pickLanguage(),
    ws: null,
    pc: null,
    local: null,
    me: null,
    participants: new Map(), // participant id -> description from the server
    tracks: {}, // mid -> {participant, kind} or null
    trackByMid: new Map(), // mid -> MediaStreamTrack
    negotiation: Promise.resolve(),
    pending: null, // {ref, resolve, reject} for the offer awaiting its answer
    offers: 0,
    audioOn: true,
    videoOn: true,
    leaving: false,
    fatal: false,
    // Measured in the page, read by operators' diagnostics and by the browser tests.
    metrics: { firstRemoteFrameMs: null, firstFrameByParticipant: {} },
  };
  window.screenvisit = state;

  function pickLanguage() {
    const asked = new URLSearchParams(location.search).get("lang");
    const stored = localStorage.getItem("screenvisit-lang");
    const lang = asked || stored || document.body.dataset.lang || "da";
    return TEXTS[lang] ? lang : "da";
  }

  function t(key, vars = {}) {
    const table = TEXTS[state.lang];
    let text = key.split(".").reduce((node, part) => (node ? node[part] : undefined), table);
    if (text === undefined) text = key;
    return text.replace(/\{(\w+)\}/g, (_, name) => (vars[name] !== undefined ? vars[name] : ""));
  }

  function applyTexts() {
    document.documentElement.lang = state.lang;
    for (const el of document.querySelectorAll("[data-i18n]")) el.textContent = t(el.dataset.i18n);
    for (const el of document.querySelectorAll("[data-i18n-aria]")) {
      el.setAttribute("aria-label", t(el.dataset.i18nAria));
    }
    for (const el of document.querySelectorAll("[data-set-lang]")) {
      el.setAttribute("aria-pressed", String(el.dataset.setLang === state.lang));
    }
    updateControls();
    render();
  }

  function setStatus(key) {
    $("status").textContent = key ? t(key) : "";
  }

  function showError(code, message) {
    const known = TEXTS[state.lang].errors[code];
    const el = $("error");
    el.dataset.code = code;
    el.textContent = known || t("errors.default", { message: message || code });
    el.hidden = false;
  }

  function send(message) {
    if (state.ws && state.ws.readyState === WebSocket.OPEN) state.ws.send(JSON.stringify(message));
  }

  // --- local media --------------------------------------------------------------------------

  async function startPreview() {
    try {
      state.local = await navigator.mediaDevices.getUserMedia({
        audio: true,
        video: { width: { ideal: 640 }, height: { ideal: 480 } },
      });
      $("preview").srcObject = state.local;
      $("self").srcObject = state.local;
    } catch (err) {
      state.local = null;
      setStatus("noCamera");
    }
  }

  function preferForwardedCodecs(transceiver, kind) {
    // The server forwards VP8 and Opus untouched, so every browser must send those.
    if (!transceiver.setCodecPreferences || !RTCRtpReceiver.getCapabilities) return;
    const wanted = kind === "video" ? ["video/vp8", "video/rtx"] : ["audio/opus"];
    const codecs = RTCRtpReceiver.getCapabilities(kind).codecs.filter((c) =>
      wanted.includes(c.mimeType.toLowerCase()),
    );
    if (codecs.length) transceiver.setCodecPreferences(codecs);
  }

  // --- signaling ----------------------------------------------------------------------------

  function connect() {
    $("join").disabled = true;
    $("error").hidden = true;
    setStatus("connecting");
    const scheme = location.protocol === "https:" ? "wss:" : "ws:";
    const ws = new WebSocket(`${scheme}//${location.host}/ws`);
    state.ws = ws;
    ws.onopen = () => send({ type: "join", token, visit: visitId });
    ws.onmessage = (event) => handle(JSON.parse(event.data));
    ws.onclose = () => {
      if (state.ws !== ws) return;
      closePeer();
      if (!state.leaving && !state.fatal) {
        showError("connection-lost");
        showView("lobby");
        $("join").disabled = false;
      }
    };
  }

  function handle(msg) {
    switch (msg.type) {
      case "joined":
        return onJoined(msg);
      case "answer":
        if (state.pending) state.pending.resolve(msg);
        return;
      case "tracks":
        state.tracks = msg.tracks;
        return render();
      case "renegotiate":
        ensureReceivers(msg.recv);
        return negotiate();
      case "participant-joined":
        state.participants.set(msg.participant.participant, msg.participant);
        announce("joinedNotice", msg.participant);
        return render();
      case "participant-left": {
        const who = state.participants.get(msg.participant);
        state.participants.delete(msg.participant);
        if (who) announce("leftNotice", who);
        return render();
      }
      case "media-state": {
        const who = state.participants.get(msg.participant);
        if (who) Object.assign(who, { audio: msg.audio, video: msg.video });
        return render();
      }
      case "error":
        if (state.pending && msg.ref === state.pending.ref) state.pending.reject(new Error(msg.message));
        if (msg.fatal) {
          state.fatal = true;
          sessionStorage.removeItem(joinedKey);
          closePeer();
          showView("lobby");
          $("join").disabled = true;
        }
        return showError(msg.code, msg.message);
      default:
        return undefined;
    }
  }

  function onJoined(msg) {
    state.me = msg.you;
    state.participants = new Map(msg.participants.map((p) => [p.participant, p]));
    sessionStorage.setItem(joinedKey, "1");
    showView("call");
    const pc = new RTCPeerConnection({ iceServers: msg.ice_servers, bundlePolicy: "max-bundle" });
    state.pc = pc;
    state.tracks = {};
    state.trackByMid = new Map();
    pc.ontrack = (event) => {
      state.trackByMid.set(event.transceiver.mid, event.track);
      render();
    };
    if (state.local) {
      for (const track of state.local.getTracks()) {
        const transceiver = pc.addTransceiver(track, { direction: "sendonly", streams: [state.local] });
        preferForwardedCodecs(transceiver, track.kind);
      }
    }
    ensureReceivers(msg.recv);
    negotiate();
    send({ type: "media-state", audio: state.audioOn, video: state.videoOn });
    render();
  }

  function ensureReceivers(recv) {
    if (!state.pc) return;
    for (const kind of ["audio", "video"]) {
      const have = state.pc
        .getTransceivers()
        .filter((tr) => tr.direction === "recvonly" && tr.receiver.track.kind === kind).length;
      for (let i = have; i < (recv[kind] || 0); i += 1) {
        preferForwardedCodecs(state.pc.addTransceiver(kind, { direction: "recvonly" }), kind);
      }
    }
  }

  function iceGatheringDone(pc, timeoutMs) {
    if (pc.iceGatheringState === "complete") return Promise.resolve();
    return new Promise((resolve) => {
      const done = () => {
        if (pc.iceGatheringState === "complete") {
          pc.removeEventListener("icegatheringstatechange", done);
          resolve();
        }
      };
      pc.addEventListener("icegatheringstatechange", done);
      setTimeout(resolve, timeoutMs);
    });
  }

  function negotiate() {
    // One offer at a time: a request to renegotiate during an offer waits for its answer.
    state.negotiation = state.negotiation
      .then(async () => {
        const pc = state.pc;
        if (!pc || state.fatal) return;
        await pc.setLocalDescription(await pc.createOffer());
        await iceGatheringDone(pc, 3000);
        state.offers += 1;
        const ref = `offer-${state.offers}`;
        const answered = new Promise((resolve, reject) => {
          state.pending = { ref, resolve, reject };
        });
        send({ type: "offer", id: ref, sdp: pc.localDescription.sdp });
        const answer = await answered;
        state.pending = null;
        if (state.pc !== pc) return;
        await pc.setRemoteDescription({ type: "answer", sdp: answer.sdp });
        state.tracks = answer.tracks;
        render();
      })
      .catch((err) => {
        state.pending = null;
        showError("default", String(err && err.message ? err.message : err));
      });
    return state.negotiation;
  }

  function closePeer() {
    if (state.pc) state.pc.close();
    state.pc = null;
    state.trackByMid = new Map();
    state.tracks = {};
    state.participants = new Map();
    render();
  }

  // --- the call view ------------------------------------------------------------------------

  function showView(name) {
    $("lobby").hidden = name !== "lobby";
    $("call").hidden = name !== "call";
    $("left").hidden = name !== "left";
  }

  function label(p) {
    const role = t(`roles.${p.role}`);
    return p.name ? `${role} · ${p.name}` : role;
  }

  function announce(key, p) {
    $("status").textContent = t(key, { name: label(p) });
  }

  function tracksOf(participant) {
    const out = {};
    for (const [mid, entry] of Object.entries(state.tracks)) {
      if (entry && entry.participant === participant && state.trackByMid.has(mid)) {
        out[entry.kind] = state.trackByMid.get(mid);
      }
    }
    return out;
  }

  function tileFor(participant) {
    let tile = document.getElementById(`tile-${participant}`);
    if (tile) return tile;
    tile = document.createElement("figure");
    tile.className = "tile remote";
    tile.id = `tile-${participant}`;
    tile.dataset.participant = participant;
    const video = document.createElement("video");
    video.autoplay = true;
    video.muted = true; // sound plays through the <audio> element; muted video always autoplays
    video.playsInline = true;
    const audio = document.createElement("audio");
    audio.autoplay = true;
    const caption = document.createElement("figcaption");
    tile.append(video, audio, caption);
    $("tiles").append(tile);
    watchFirstFrame(participant, video);
    return tile;
  }

  function watchFirstFrame(participant, video) {
    const seen = () => {
      const ms = performance.now();
      state.metrics.firstFrameByParticipant[participant] ??= ms;
      if (state.metrics.firstRemoteFrameMs === null) state.metrics.firstRemoteFrameMs = ms;
    };
    if (video.requestVideoFrameCallback) video.requestVideoFrameCallback(seen);
    else video.addEventListener("loadeddata", seen, { once: true });
  }

  function attach(element, track) {
    const current = element.srcObject && element.srcObject.getTracks()[0];
    if (track && current !== track) {
      element.srcObject = new MediaStream([track]);
      const playing = element.play();
      if (playing && element.tagName === "AUDIO") playing.catch(() => {});
    } else if (!track && element.srcObject) {
      element.srcObject = null;
    }
  }

  function render() {
    const tiles = $("tiles");
    if (!tiles) return;
    const present = new Set(state.participants.keys());
    for (const tile of [...tiles.children]) {
      if (!present.has(tile.dataset.participant)) tile.remove();
    }
    for (const [id, p] of state.participants) {
      const tile = tileFor(id);
      const tracks = tracksOf(id);
      attach(tile.querySelector("video"), tracks.video);
      attach(tile.querySelector("audio"), tracks.audio);
      const flags = [];
      if (p.audio === false) flags.push(t("muted"));
      if (p.video === false) flags.push(t("cameraIsOff"));
      tile.querySelector("figcaption").textContent =
        label(p) + (flags.length ? ` (${flags.join(", ")})` : "");
      tile.classList.toggle("camera-off", p.video === false);
    }
    if (state.pc && !state.fatal) setStatus(state.participants.size ? "inCall" : "waitingForOthers");
  }

  function updateControls() {
    const mute = $("mute");
    mute.textContent = t(state.audioOn ? "mute" : "unmute");
    mute.setAttribute("aria-pressed", String(!state.audioOn));
    const camera = $("camera");
    camera.textContent = t(state.videoOn ? "cameraOff" : "cameraOn");
    camera.setAttribute("aria-pressed", String(!state.videoOn));
  }

  function toggle(kind) {
    if (kind === "audio") state.audioOn = !state.audioOn;
    else state.videoOn = !state.videoOn;
    if (state.local) {
      for (const track of state.local.getTracks()) {
        if (track.kind === kind) track.enabled = kind === "audio" ? state.audioOn : state.videoOn;
      }
    }
    send({ type: "media-state", audio: state.audioOn, video: state.videoOn });
    updateControls();
  }

  function leave() {
    state.leaving = true;
    sessionStorage.removeItem(joinedKey);
    send({ type: "leave" });
    closePeer();
    if (state.ws) state.ws.close();
    showView("left");
  }

  // --- start --------------------------------------------------------------------------------

  for (const el of document.querySelectorAll("[data-set-lang]")) {
    el.addEventListener("click", () => {
      state.lang = el.dataset.setLang;
      localStorage.setItem("screenvisit-lang", state.lang);
      applyTexts();
    });
  }
  $("join").addEventListener("click", connect);
  $("mute").addEventListener("click", () => toggle("audio"));
  $("camera").addEventListener("click", () => toggle("video"));
  $("leave").addEventListener("click", leave);
  $("rejoin").addEventListener("click", () => location.reload());
  applyTexts();

  if (!token) {
    showError("no-token", t("noToken"));
    $("error").textContent = t("noToken");
    return;
  }
  startPreview().then(() => {
    $("join").disabled = false;
    // A reload during a visit goes straight back in: the seat is the same link.
    if (sessionStorage.getItem(joinedKey)) connect();
  });
})();

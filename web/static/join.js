"use strict";
// The join page: self-preview, "Deltag", the waiting room, then one tile per remote participant.
// Standard WebRTC only (unified plan). The browser makes every offer; the server answers and
// tells us which participant each receiving transceiver (by mid) carries.
(() => {
  const TEXTS = window.SCREENVISIT_TEXTS;
  const $ = (id) => document.getElementById(id);
  const visitId = document.body.dataset.visit;
  const joinedKey = `screenvisit-joined-${visitId}`;
  const token = location.hash.slice(1);
  const RECONNECT_DELAYS_MS = [500, 1000, 2000, 4000, 8000];
  const stage = window.screenvisitStage;
  const precall = window.screenvisitPrecall;
  const connwatch = window.screenvisitConnWatch;
  const confirm = window.screenvisitConfirm;
  // Tests shorten the backoff (first delay, cap) to see the cap without waiting for it.
  const TUNING = window.screenvisitTuning || {};
  // A loss of the socket, ICE or the media: recover with backoff; past the cap, stop and say so.
  const recovery = connwatch.backoff({ first: TUNING.first || 500, max: 4000, cap: TUNING.cap || 6 });
  // Trouble this long after the last trouble starts the backoff afresh.
  const RECOVERY_FORGET_MS = 20000;
  const DISCONNECTED_GRACE_MS = 3000;
  // The server acknowledges an outcome once it is durable; past this, try again.
  const OUTCOME_ACK_MS = 15000;

  const state = {
    lang: pickLanguage(),
    ws: null,
    pc: null,
    local: null,
    me: null,
    visit: null,
    inCall: false,
    participants: new Map(), // participant id -> description from the server
    waiting: new Map(), // for hosts: who waits in the waiting room
    barred: new Map(), // for hosts: who was removed and stays out until readmitted
    tracks: {}, // mid -> {participant, kind} or null
    trackByMid: new Map(), // mid -> MediaStreamTrack
    negotiation: Promise.resolve(),
    pending: null, // {ref, resolve, reject} for the offer awaiting its answer
    offers: 0,
    audioOn: true,
    videoOn: true,
    leaving: false,
    fatal: false,
    shutdown: null, // the status text key while the server is shutting down
    reconnects: 0,
    // The host's outcome until the server has acknowledged it as saved:
    // {outcome, note, ref, attempts, saved, timer, status}.
    outcome: null,
    // Measured in the page, read by operators' diagnostics and by the browser tests.
    metrics: {
      firstRemoteFrameMs: null, firstFrameByParticipant: {}, arrivalsNotified: 0, joinTimeReported: null,
      joinPressedMs: null, joinToFirstFrameMs: null, recoveries: 0,
    },
    precall: null, // the connection test's result
    linkIce: [], // STUN/TURN servers for the pre-call connection test
    lastTrouble: -Infinity,
    recoveryTimer: null,
    mediaWatch: null,
  };
  window.screenvisit = state;
  // Extensions (share.js) hook in here: offer(pc) -> extra offer fields, peer(pc) on a new
  // peer connection, joined(msg), render(); and call back through api.
  state.hooks = {};
  state.api = { negotiate, send, render, t, preferForwardedCodecs };

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
    renderEndState();
    if (state.deviceNotice && !state.pc) setStatus(state.deviceNotice);
    renderDeviceHelp();
    renderConnectionTest();
    if (state.connNotice) showConn(state.connNotice);
    if (state.outcome) outcomeStatus(state.outcome.status);
  }

  function setStatus(key, vars) {
    $("status").textContent = key ? t(key, vars) : "";
  }

  function showError(code, message) {
    // "default" is the fallback text itself: its {message} is filled in, never shown raw.
    const known = code !== "default" && TEXTS[state.lang].errors[code];
    const el = $("error");
    el.dataset.code = code;
    el.textContent = known ? t(`errors.${code}`) : t("errors.default", { message: message || code });
    el.hidden = false;
  }

  // --- end states: one full page each, saying what happened and what to do next -------------

  const END_STATE_OF = {
    removed: "removed",
    barred: "removed",
    declined: "declined",
    "knock-too-soon": "declined",
    "server-shutdown": "shutdown",
    "session-replaced": "replaced",
    "token-expired": "expired",
    "visit-over": "over",
  };
  // Codes that mean the link itself is no good (the others are shown in the lobby).
  const BAD_LINK = new Set([
    "no-token", "token-missing", "token-malformed", "token-bad-signature", "token-revoked",
    "token-not-a-link", "token-visit-mismatch", "visit-not-found", "forbidden",
    "token-unknown-issuer", "token-wrong-audience", "token-not-yet-valid",
  ]);

  // Bad links whose own text says more than "not valid".
  const SAYS_WHY = new Set(["token-revoked", "token-visit-mismatch", "visit-not-found"]);

  function endStateFor(code) {
    if (END_STATE_OF[code]) return END_STATE_OF[code];
    if (BAD_LINK.has(code) || code.startsWith("token-") || code.startsWith("seat-token-")) return "invalid";
    return null;
  }

  function showEndState(name, vars = {}) {
    state.endState = { name, vars };
    state.fatal = true;
    sessionStorage.removeItem(joinedKey);
    closePeer();
    setStatus("");
    $("error").hidden = true;
    if (name === "ended") {
      showView("ended");
      return;
    }
    showView("end-state");
    renderEndState();
    $("end-title").focus();
  }

  function renderEndState() {
    if (!state.endState || state.endState.name === "ended") return;
    const { name, vars } = state.endState;
    const texts = TEXTS[state.lang].endStates[name];
    $("end-state").dataset.state = name;
    $("end-title").textContent = texts.title;
    // A bad link says which way it is bad (withdrawn, for another visit, ...) when known.
    const specific = name === "invalid" && SAYS_WHY.has(vars.code) && TEXTS[state.lang].errors[vars.code];
    $("end-what").textContent = specific || t(`endStates.${name}.${vars.whatKey || "what"}`, vars);
    $("end-next").textContent = t(`endStates.${name}.next`, vars);
    const action = $("end-action");
    action.hidden = !texts.action;
    action.textContent = texts.action || "";
  }

  async function checkLink() {
    // Before any device prompt: a bad, expired or cancelled link fails here, at once.
    let response;
    try {
      response = await fetch(`/api/visits/${encodeURIComponent(visitId)}/link`, {
        headers: { Authorization: `Bearer ${token}` },
        cache: "no-store",
      });
    } catch (err) {
      return true; // the server is unreachable now: the lobby's Deltag tries again
    }
    let body = {};
    try {
      body = await response.json();
    } catch (err) {
      body = {};
    }
    if (!response.ok) {
      const code = (body.error && body.error.code) || `http-${response.status}`;
      const end = endStateFor(code);
      if (end) {
        showEndState(end, { code });
        return false;
      }
      if (response.status === 429) showError(code, body.error && body.error.message);
      return true;
    }
    state.linkIce = body.ice_servers || [];
    if (body.state === "cancelled") return showEndState("cancelled"), false;
    // Past its window a visit is over, whether it took place or nobody came.
    if (body.window === "after") return showEndState("over"), false;
    if (body.state === "ended") return showEndState("ended"), false;
    if (body.window === "before") return waitForOpening(body), false;
    return true;
  }

  // The link opens the visit at `opens_at`: say when, and open it then, by itself, with one
  // timer (no polling); the link is checked again then, in case the time was changed.
  let openingTimer = null;
  function waitForOpening(body) {
    const opens = new Date(body.opens_at * 1000);
    const two = (n) => String(n).padStart(2, "0");
    const time = `${two(opens.getHours())}:${two(opens.getMinutes())}`;
    const today = opens.toDateString() === new Date().toDateString();
    const day = opens.toLocaleDateString(state.lang === "da" ? "da-DK" : "en-GB", {
      weekday: "long", day: "numeric", month: "long",
    });
    showEndState("notYetOpen", { time, day, whatKey: today ? "what" : "whatDay" });
    clearTimeout(openingTimer);
    const due = Math.max(body.opens_at - body.now, 0) * 1000 + 250;
    openingTimer = setTimeout(start, Math.min(due, 2 ** 31 - 1));
  }

  function start() {
    return checkLink().then((open) => {
      if (!open) return undefined;
      if (state.endState) {
        state.endState = null;
        state.fatal = false;
        showView("lobby");
      }
      // Back from a reload in the call: straight in, no test to wait for.
      if (!sessionStorage.getItem(joinedKey)) runConnectionTest();
      return startPreview().then(() => {
        $("join").disabled = false;
        // A reload during a visit goes straight back in: the seat is the same link.
        if (sessionStorage.getItem(joinedKey)) connect();
      });
    });
  }

  function send(message) {
    if (state.ws && state.ws.readyState === WebSocket.OPEN) state.ws.send(JSON.stringify(message));
  }

  // --- local media --------------------------------------------------------------------------

  async function startPreview() {
    // Camera and microphone; without a camera, the microphone alone; without either, nothing:
    // the participant still joins, and sees and hears the others.
    if (state.local) for (const track of state.local.getTracks()) track.stop();
    const opened = await precall.openDevices();
    state.local = opened.stream;
    const hasVideo = Boolean(state.local && state.local.getVideoTracks().length);
    const hasAudio = Boolean(state.local && state.local.getAudioTracks().length);
    state.videoOn = hasVideo;
    state.audioOn = hasAudio;
    $("camera").disabled = !hasVideo;
    $("mute").disabled = !hasAudio;
    updateControls();
    for (const id of ["preview", "waiting-preview", "self"]) $(id).srcObject = state.local;
    // No picture of oneself to check: no empty preview either.
    for (const id of ["preview", "waiting-preview", "self-tile"]) $(id).hidden = !hasVideo;
    $("self-toggle").hidden = !hasVideo;
    $("lobby-hint").dataset.i18n = hasVideo ? "lobbyHint" : "lobbyHintNoCamera";
    $("lobby-hint").textContent = t($("lobby-hint").dataset.i18n);
    state.deviceNotice = hasVideo ? (hasAudio ? "" : "noMicVideoOnly") : hasAudio ? "noCameraAudioOnly" : "noCamera";
    // What is missing, and whether the browser refused it (then: how to allow it).
    const missing = hasVideo ? (hasAudio ? null : "mic") : hasAudio ? "camera" : opened.refused ? "both" : "none";
    state.deviceHelp = missing && { missing, refused: opened.refused };
    renderDeviceHelp();
    // The meter is for the pre-call check only: it costs a frame's work on every frame.
    if (!$("lobby").hidden) precall.startMeter(hasAudio ? state.local.getAudioTracks()[0] : null, $("mic-level"));
    $("mic-level").closest(".level").hidden = !hasAudio;
    await refreshPickers();
    setStatus(state.deviceNotice);
    // Back in the call after a retry: the new tracks go out on the next offer.
    if (state.pc && state.inCall) send({ type: "media-restart" });
  }

  function renderDeviceHelp() {
    const help = state.deviceHelp;
    $("device-help").hidden = !help;
    if (!help) return;
    // The status line says what is missing; this says what to do about it.
    $("device-help-text").textContent = t(help.refused ? `help.${precall.browserFamily()}` : "help.plugIn");
  }

  function localTrack(kind) {
    return state.local ? state.local.getTracks().find((track) => track.kind === kind) : undefined;
  }

  async function refreshPickers() {
    const list = await precall.devices();
    const using = (kind) => {
      const track = localTrack(kind);
      return track ? track.getSettings().deviceId : precall.prefs()[kind === "video" ? "camera" : "mic"];
    };
    state.cameras = precall.fillPicker($("pick-camera"), list, "videoinput", using("video"), t);
    precall.fillPicker($("pick-mic"), list, "audioinput", using("audio"), t);
    const speakers = precall.speakerSupported()
      ? precall.fillPicker($("pick-speaker"), list, "audiooutput", precall.prefs().speaker, t)
      : 0;
    $("pick-speaker").hidden = !speakers;
    document.querySelector("label[for=pick-speaker]").hidden = !speakers;
    $("switch-camera").hidden = !(localTrack("video") && state.cameras > 1);
  }

  async function switchTrack(kind, extra) {
    // Another device of `kind` in place of the one in use, in the preview and in the call.
    const old = localTrack(kind);
    if (!old) return;
    if (kind === "video") old.stop(); // a phone cannot open both its cameras at once
    let track;
    try {
      track = await precall.openTrack(kind, extra);
    } catch (err) {
      if (kind === "video" && extra) return switchTrack(kind); // no such facing: the next one
      track = null;
    }
    if (!track) return startPreview();
    if (kind === "audio") old.stop();
    precall.remember(kind === "video" ? "camera" : "mic", track.getSettings().deviceId);
    track.enabled = kind === "audio" ? state.audioOn : state.videoOn;
    state.local.removeTrack(old);
    state.local.addTrack(track);
    if (state.pc) {
      for (const sender of state.pc.getSenders()) {
        if (sender.track === old) await sender.replaceTrack(track);
      }
    }
    for (const id of ["preview", "waiting-preview", "self"]) $(id).srcObject = state.local;
    const facing = kind === "video" && track.getSettings().facingMode;
    $("self-tile").classList.toggle("unmirrored", facing === "environment");
    $("preview").classList.toggle("unmirrored", facing === "environment");
    if (kind === "audio" && !$("lobby").hidden) precall.startMeter(track, $("mic-level"));
    await refreshPickers();
  }

  async function nextCamera() {
    // Front and back where the camera says which way it faces; otherwise the next camera.
    const track = localTrack("video");
    if (!track) return;
    const facing = track.getSettings().facingMode;
    if (facing === "user" || facing === "environment") {
      await switchTrack("video", { facingMode: { exact: facing === "user" ? "environment" : "user" } });
      return;
    }
    const cameras = (await precall.devices()).filter((d) => d.kind === "videoinput" && d.deviceId);
    const i = cameras.findIndex((d) => d.deviceId === track.getSettings().deviceId);
    const next = cameras[(i + 1) % cameras.length];
    if (!next) return;
    precall.remember("camera", next.deviceId);
    await switchTrack("video");
  }

  async function runConnectionTest() {
    $("net-test").disabled = true;
    $("net-verdict").dataset.verdict = "testing";
    $("net-verdict").textContent = t("netTesting");
    $("net-details").textContent = "";
    state.precall = await precall.testConnection(state.linkIce);
    $("net-test").disabled = false;
    renderConnectionTest();
  }

  function renderConnectionTest() {
    const r = state.precall;
    if (!r) return;
    const verdict = $("net-verdict");
    verdict.dataset.verdict = r.verdict;
    verdict.textContent = t(r.verdict);
    const details = $("net-details");
    details.textContent = "";
    const lines = [];
    if (r.rttMs !== null) lines.push(t("netRtt", { ms: r.rttMs }));
    if (r.mbit !== null) lines.push(t("netRate", { mbit: r.mbit >= 100 ? "100+" : r.mbit.toFixed(1) }));
    if (r.verdict !== "netFailed") {
      lines.push(t({ ok: "netUdpOk", relay: "netUdpRelay", blocked: "netUdpBlocked" }[r.udp] || "netUdpUntested"));
    }
    for (const line of lines) {
      const item = document.createElement("li");
      item.textContent = line;
      details.append(item);
    }
  }

  function preferForwardedCodecs(transceiver, kind) {
    // The server forwards VP8 or H264 and Opus untouched, and picks per publisher a video
    // codec every participant can decode: offer those (VP8 first), with RTX.
    if (!transceiver.setCodecPreferences || !RTCRtpReceiver.getCapabilities) return;
    const wanted = kind === "video" ? ["video/vp8", "video/h264", "video/rtx"] : ["audio/opus"];
    const codecs = RTCRtpReceiver.getCapabilities(kind).codecs
      .filter((c) => wanted.includes(c.mimeType.toLowerCase()))
      .filter((c) => c.mimeType.toLowerCase() !== "video/h264" || /packetization-mode=1/.test(c.sdpFmtpLine || ""))
      .sort((a, b) => wanted.indexOf(a.mimeType.toLowerCase()) - wanted.indexOf(b.mimeType.toLowerCase()));
    if (codecs.length) transceiver.setCodecPreferences(codecs);
  }

  // --- signaling ----------------------------------------------------------------------------

  function connect() {
    $("join").disabled = true;
    $("error").hidden = true;
    // The connection alert, when it shows, says it already: not twice.
    setStatus(state.connNotice ? "" : state.reconnects ? "reconnecting" : "connecting");
    const scheme = location.protocol === "https:" ? "wss:" : "ws:";
    const ws = new WebSocket(`${scheme}//${location.host}/ws`);
    state.ws = ws;
    ws.onopen = () => send({ type: "join", token, visit: visitId });
    ws.onmessage = (event) => handle(JSON.parse(event.data));
    ws.onclose = () => {
      if (state.ws !== ws) return;
      closePeer();
      if (state.leaving || state.fatal) return;
      // Network dropped or the server restarted: the seat is kept for a while, so go back.
      state.reconnects += 1;
      const delay = nextRecovery();
      setStatus(state.inCall ? "" : "reconnecting");
      if (delay === null) {
        // The server has not answered for a while (shut down, or the network is gone): say
        // so on a page of its own, with a button that tries again.
        state.unreachable = true;
        showConn(null);
        showView("end-state");
        state.endState = { name: "shutdown", vars: {} };
        renderEndState();
        return;
      }
      if (state.inCall) showConn("unstable");
      clearTimeout(state.recoveryTimer);
      state.recoveryTimer = setTimeout(connect, delay);
    };
  }

  // --- connection state: lost socket, ICE failed or disconnected, stalled media ---------------

  function nextRecovery() {
    const now = performance.now();
    if (now - state.lastTrouble > RECOVERY_FORGET_MS) recovery.reset();
    state.lastTrouble = now;
    state.metrics.recoveries += 1;
    return recovery.next();
  }

  function showConn(key) {
    state.connNotice = key;
    $("conn").hidden = !key;
    $("conn").dataset.state = key || "";
    $("conn-text").textContent = key ? t(key) : "";
    $("conn-retry").hidden = key !== "unstableGaveUp";
  }

  function mediaTrouble(why) {
    // ICE failed, stayed disconnected or the media stalled while the socket is up. aiortc
    // cannot restart ICE on a live connection, so the first attempts replace the peer
    // connection (over the same socket: the seat is kept, the waiting room skipped); later
    // ones rejoin from a new socket.
    if (state.fatal || state.leaving || state.recoveryTimer || !state.inCall) return;
    console.info(`media trouble: ${why}`);
    const delay = nextRecovery();
    if (delay === null) {
      showConn("unstableGaveUp");
      return;
    }
    showConn("unstable");
    state.recoveryTimer = setTimeout(() => {
      state.recoveryTimer = null;
      if (recovery.attempts <= 2 && state.ws && state.ws.readyState === WebSocket.OPEN) {
        send({ type: "media-restart" });
      } else if (state.ws) {
        state.ws.close(); // onclose rejoins
      }
    }, delay);
  }

  function retryConnection() {
    // After the cap: the person asks for another round, with the backoff from the start.
    recovery.reset();
    state.lastTrouble = -Infinity;
    clearTimeout(state.recoveryTimer);
    state.recoveryTimer = null;
    showConn("unstable");
    if (state.ws && state.ws.readyState === WebSocket.OPEN) {
      send({ type: "media-restart" });
      return;
    }
    state.endState = null;
    state.unreachable = false;
    showView(state.inCall ? "call" : "lobby");
    connect();
  }

  function mediaSettled() {
    // Media flows on a connected peer: the notice goes, the next trouble starts a new round.
    if (state.connNotice === "unstable" && !state.recoveryTimer) showConn(null);
  }

  function expectedMids() {
    // Inbound streams of those who are here and not themselves reconnecting.
    const mids = new Set();
    for (const [mid, entry] of Object.entries(state.tracks)) {
      const who = entry && state.participants.get(entry.participant);
      if (who && !who.reconnecting && state.trackByMid.has(mid)) mids.add(mid);
    }
    return mids;
  }

  function handle(msg) {
    switch (msg.type) {
      case "joined":
        return onJoined(msg);
      case "admitted":
        return enterCall(msg);
      case "answer":
        // Apply the slot map now, in message order: a "tracks" message that follows the
        // answer is newer, and must not be overwritten once the answer has been applied.
        state.tracks = msg.tracks;
        if (state.pending) state.pending.resolve(msg);
        return undefined;
      case "tracks":
        state.tracks = msg.tracks;
        return render();
      case "renegotiate":
        ensureReceivers(msg.recv);
        return negotiate();
      case "media-restarted":
        return startPeer(msg.recv);
      case "participant-joined":
      case "participant-reconnected":
        state.participants.set(msg.participant.participant, msg.participant);
        if (msg.type === "participant-joined") announce("joinedNotice", msg.participant);
        return render();
      case "participant-reconnecting": {
        const who = state.participants.get(msg.participant);
        if (who) who.reconnecting = true;
        return render();
      }
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
      case "assisting": {
        const who = state.participants.get(msg.participant) || (state.me && state.me.participant === msg.participant ? state.me : null);
        if (who) who.assisting = msg.on;
        return render();
      }
      case "waiting":
        msg.participant.repeat = Boolean(msg.repeat);
        state.waiting.set(msg.participant.participant, msg.participant);
        notifyArrival(msg.participant);
        return renderWaiting();
      case "barred":
        state.barred.set(msg.participant.participant, msg.participant);
        return renderWaiting();
      case "readmitted":
        state.barred.delete(msg.participant);
        return renderWaiting();
      case "waiting-ended":
        state.waiting.delete(msg.participant);
        return renderWaiting();
      case "mute-request":
        if (state.audioOn) toggle("audio");
        return setStatus("muteRequested");
      case "chat":
        return addChat(msg);
      case "quality": {
        const who = state.participants.get(msg.participant);
        if (who) who.quality = msg.level;
        return render();
      }
      case "fallback-phone":
        return setStatus("phoneNotice");
      case "server-shutdown":
        state.shutdown = msg.moving ? "shutdownMoving" : "shutdownEnding";
        return setStatus(state.shutdown);
      case "outcome-recorded":
        return outcomeSaved(msg);
      case "visit-ended":
        if (msg.reason === "cancelled") {
          if ($("outcome-dialog").open) $("outcome-dialog").close();
          return showEndState("cancelled");
        }
        state.fatal = true;
        sessionStorage.removeItem(joinedKey);
        closePeer();
        if ($("outcome-dialog").open) $("outcome-dialog").close();
        $("outcome-saved").hidden = !(state.outcome && state.outcome.saved);
        showView("ended");
        return offerSurvey();
      case "video-unsupported": {
        const who = state.participants.get(msg.participant);
        if (who) who.unsupported = msg.codec;
        return render();
      }
      case "error":
        // Informational: the call goes on over the candidates the server accepted.
        if (msg.code === "ice-candidate-refused") return console.info(msg.message);
        if (state.outcome && msg.ref === state.outcome.ref) return outcomeRefused(msg);
        if (state.pending && msg.ref === state.pending.ref) state.pending.reject(new Error(msg.message));
        if (msg.fatal && (msg.code === "visit-closed" || msg.code === "visit-not-open-yet")) {
          state.fatal = true;
          // Ended or cancelled since the page loaded: the link check says which.
          return checkLink().then((open) => {
            if (open) showEndState("ended");
          });
        }
        if (msg.fatal && endStateFor(msg.code)) return showEndState(endStateFor(msg.code), { code: msg.code });
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
    state.shutdown = null;
    state.unreachable = false;
    state.endState = null;
    state.me = msg.you;
    state.visit = msg.visit;
    state.reconnects = 0;
    clearTimeout(state.recoveryTimer);
    state.recoveryTimer = null;
    state.iceServers = msg.ice_servers;
    if (state.hooks.joined) state.hooks.joined(msg);
    sessionStorage.setItem(joinedKey, "1");
    state.waiting = new Map((msg.waiting_room || []).map((p) => [p.participant, p]));
    state.barred = new Map((msg.barred || []).map((p) => [p.participant, p]));
    const host = Boolean(msg.you.host);
    state.outcomes = msg.outcomes || [];
    $("host-panel").hidden = !host;
    $("phone").hidden = !host;
    $("end").hidden = !host;
    $("timer").hidden = !host;
    if (host) {
      // Since the call began, as the server counts it (on its own clock, not this device's):
      // the same on every device of the host's, after any reload.
      const { started_at: started, now } = msg.visit;
      stage.startTimer($("timer-value"), Date.now() - (started ? Math.max(now - started, 0) * 1000 : 0));
    }
    const assistingNurse = msg.you.role === "nurse" && msg.visit.kind === "assisted";
    $("assisting-row").hidden = !assistingNurse;
    if (msg.waiting) {
      state.inCall = false;
      showView("waiting");
      setStatus("");
      return;
    }
    enterCall(msg);
    if (assistingNurse && !msg.reconnect) send({ type: "assisting", on: $("assisting").checked });
    renderWaiting();
    // Back after a dropped socket with the outcome not yet acknowledged: send it again now;
    // acknowledged, but the visit not ended (the socket dropped before "end" went out): end it.
    if (state.outcome && !state.outcome.saved) sendOutcome();
    else if (state.outcome && state.outcome.saved) send({ type: "end" });
  }

  function enterCall(msg) {
    state.inCall = true;
    state.participants = new Map(msg.participants.map((p) => [p.participant, p]));
    for (const line of msg.chat || []) addChat(line);
    showView("call");
    startPeer(msg.recv);
    send({ type: "media-state", audio: state.audioOn, video: state.videoOn });
    render();
  }

  function startPeer(recv) {
    if (state.pc) state.pc.close();
    const pc = new RTCPeerConnection({ iceServers: state.iceServers, bundlePolicy: "max-bundle" });
    state.pc = pc;
    state.tracks = {};
    state.trackByMid = new Map();
    pc.ontrack = (event) => {
      state.trackByMid.set(event.transceiver.mid, event.track);
      render();
    };
    pc.onconnectionstatechange = () => {
      if (state.pc !== pc || state.fatal) return;
      clearTimeout(state.disconnectedTimer);
      if (pc.connectionState === "failed") mediaTrouble("ice-failed");
      else if (pc.connectionState === "disconnected") {
        state.disconnectedTimer = setTimeout(() => {
          if (state.pc === pc && pc.connectionState === "disconnected") mediaTrouble("ice-disconnected");
        }, DISCONNECTED_GRACE_MS);
      } else if (pc.connectionState === "connected" && !expectedMids().size) mediaSettled();
    };
    if (state.mediaWatch) state.mediaWatch.stop();
    state.mediaWatch = connwatch.watchMedia(pc, expectedMids, {
      onStall: () => state.pc === pc && mediaTrouble("media-stalled"),
      onFlowing: mediaSettled,
    }, { stallMs: TUNING.stallMs || 4000 });
    if (state.local) {
      for (const track of state.local.getTracks()) {
        const transceiver = pc.addTransceiver(track, { direction: "sendonly", streams: [state.local] });
        preferForwardedCodecs(transceiver, track.kind);
      }
    }
    if (state.hooks.peer) state.hooks.peer(pc);
    ensureReceivers(recv);
    negotiate();
  }

  function ensureReceivers(recv) {
    if (!state.pc) return;
    // Sending nothing, an offer must still carry a receiving m-line of each kind: an empty
    // offer cannot be answered, and that participant would never see anyone.
    const sendsNothing = !state.local || !state.local.getTracks().length;
    for (const kind of ["audio", "video"]) {
      const have = state.pc
        .getTransceivers()
        .filter((tr) => tr.direction === "recvonly" && tr.receiver.track.kind === kind).length;
      const wanted = Math.max(recv[kind] || 0, sendsNothing ? 1 : 0);
      for (let i = have; i < wanted; i += 1) {
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
        const extra = state.hooks.offer ? state.hooks.offer(pc) : {};
        send({ type: "offer", id: ref, sdp: pc.localDescription.sdp, ...extra });
        const answer = await answered;
        state.pending = null;
        if (state.pc !== pc) return;
        await pc.setRemoteDescription({ type: "answer", sdp: answer.sdp });
        render();
      })
      .catch((err) => {
        state.pending = null;
        // A refused offer (say a source not allowed) must not leave the connection stuck.
        if (state.pc && state.pc.signalingState === "have-local-offer") {
          state.pc.setLocalDescription({ type: "rollback" }).catch(() => {});
        }
        showError("default", String(err && err.message ? err.message : err));
      });
    return state.negotiation;
  }

  function closePeer() {
    if (state.mediaWatch) state.mediaWatch.stop();
    state.mediaWatch = null;
    clearTimeout(state.disconnectedTimer);
    if (state.pc) state.pc.close();
    state.pc = null;
    state.pending = null;
    state.negotiation = Promise.resolve();
    state.trackByMid = new Map();
    state.tracks = {};
    render();
  }

  // --- the host's waiting room --------------------------------------------------------------

  function notifyArrival(p) {
    // Every arrival, not only the first: a sound and a visible notice (read out by screen readers).
    state.metrics.arrivalsNotified += 1;
    const notice = $("arrival");
    notice.textContent = t(p.repeat ? "arrivalAgain" : "arrivalNotice", { name: label(p) });
    notice.hidden = false;
    chime();
  }

  function chime() {
    window.screenvisitChime();
  }

  function renderSideToggle() {
    const host = Boolean(state.me && state.me.host);
    const waiting = host && state.waiting.size ? ` (${state.waiting.size})` : "";
    $("side-toggle").textContent = t(host ? "sideToggleHost" : "sideToggle") + waiting;
  }

  function renderWaiting() {
    renderSideToggle();
    const list = $("waiting-list");
    list.textContent = "";
    for (const [id, p] of state.waiting) {
      const item = document.createElement("li");
      item.dataset.participant = id;
      const name = document.createElement("span");
      name.textContent = p.repeat ? `${label(p)} (${t("declinedBefore")})` : label(p);
      const admit = document.createElement("button");
      admit.type = "button";
      admit.textContent = t("admit");
      admit.addEventListener("click", () => send({ type: "admit", participant: id }));
      const decline = document.createElement("button");
      decline.type = "button";
      decline.textContent = t("decline");
      decline.addEventListener("click", () => send({ type: "decline", participant: id }));
      item.append(name, admit, decline);
      list.append(item);
    }
    if (!state.waiting.size) {
      const empty = document.createElement("li");
      empty.textContent = t("waitingEmpty");
      list.append(empty);
      $("arrival").hidden = true;
    }
    $("admit-all").hidden = state.waiting.size < 2;
    const barred = $("barred-list");
    barred.textContent = "";
    for (const [id, p] of state.barred) {
      const item = document.createElement("li");
      item.dataset.participant = id;
      const name = document.createElement("span");
      name.textContent = label(p);
      const readmit = document.createElement("button");
      readmit.type = "button";
      readmit.textContent = t("readmit");
      readmit.addEventListener("click", () => send({ type: "readmit", participant: id }));
      item.append(name, readmit);
      barred.append(item);
    }
    barred.hidden = $("barred-title").hidden = !state.barred.size;
  }

  // --- the call view ------------------------------------------------------------------------

  function showView(name) {
    for (const view of ["lobby", "waiting", "call", "left", "ended", "end-state"]) {
      $(view).hidden = view !== name;
    }
    // The call fills the viewport (style.css); the other views are pages that may scroll.
    document.body.dataset.view = name;
    if (name !== "lobby") precall.stopMeter();
    if (name === "call") stage.relayout();
    // The host's timer belongs to the call: once it is over (or was never entered), it goes.
    if (!["waiting", "call"].includes(name)) {
      stage.stopTimer();
      $("timer").hidden = true;
    }
    // An end state says it all: no "Du er med i besøget" left over beside it.
    if (!["lobby", "waiting", "call"].includes(name)) setStatus("");
  }

  function label(p) {
    if (p.assisting) return p.name ? `${t("assistedBy")} · ${p.name}` : t("assistedBy");
    const role = t(`roles.${p.role}`);
    return p.name ? `${role} · ${p.name}` : role;
  }

  function announce(key, p) {
    $("status").textContent = t(key, { name: label(p) });
  }

  function tracksOf(participant) {
    const out = {};
    for (const [mid, entry] of Object.entries(state.tracks)) {
      const face = !entry || !entry.source || ["camera", "microphone"].includes(entry.source);
      if (face && entry && entry.participant === participant && state.trackByMid.has(mid)) {
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
    precall.applySpeaker(precall.prefs().speaker);
    const caption = document.createElement("figcaption");
    tile.append(video, audio, caption);
    const tools = document.createElement("div");
    tools.className = "tile-tools";
    const pin = document.createElement("button");
    pin.type = "button";
    pin.className = "tile-button pin";
    pin.setAttribute("aria-pressed", "false");
    pin.textContent = "⤢";
    pin.addEventListener("click", () => stage.pin(stage.pinned() === tile ? null : tile));
    tools.append(pin);
    if (state.me && state.me.host) {
      const mute = document.createElement("button");
      mute.type = "button";
      mute.className = "ask-mute";
      mute.addEventListener("click", () => send({ type: "mute-request", participant }));
      const remove = document.createElement("button");
      remove.type = "button";
      remove.className = "remove danger";
      remove.addEventListener("click", () => confirmRemove(participant));
      tools.append(mute, remove);
    }
    tile.append(tools);
    $("tiles").append(tile);
    audio.addEventListener("loadedmetadata", () => precall.applySpeaker(precall.prefs().speaker));
    watchFirstFrame(participant, video);
    return tile;
  }

  async function confirmRemove(participant) {
    const who = state.participants.get(participant);
    if (!who) return;
    const name = label(who);
    const yes = await confirm.ask({
      title: t("confirmRemoveTitle", { name }),
      text: t("confirmRemoveText", { name }),
      yes: t("confirmRemoveYes"),
    });
    if (yes) send({ type: "remove", participant });
  }

  function watchFirstFrame(participant, video) {
    const seen = () => {
      const ms = performance.now();
      state.metrics.firstFrameByParticipant[participant] ??= ms;
      if (state.metrics.firstRemoteFrameMs === null) {
        state.metrics.firstRemoteFrameMs = ms;
        reportJoinTime(ms / 1000);
        if (state.metrics.joinPressedMs !== null) state.metrics.joinToFirstFrameMs = ms - state.metrics.joinPressedMs;
      }
    };
    if (video.requestVideoFrameCallback) video.requestVideoFrameCallback(seen);
    else video.addEventListener("loadeddata", seen, { once: true });
  }

  function reportJoinTime(seconds) {
    // Link opened (navigation start) -> first remote frame, for the operators' metrics.
    fetch(`/api/visits/${encodeURIComponent(visitId)}/join-time`, {
      method: "POST",
      headers: { "Content-Type": "application/json", Authorization: `Bearer ${token}` },
      body: JSON.stringify({ seconds: Math.min(seconds, 3600) }),
      keepalive: true,
    })
      .then((response) => (state.metrics.joinTimeReported = response.status))
      .catch(() => {});
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
      // Only the participants' own tiles: others (a shared screen) are their owners' to remove.
      const own = tile.id === `tile-${tile.dataset.participant}`;
      if (own && !present.has(tile.dataset.participant)) tile.remove();
    }
    for (const [id, p] of state.participants) {
      const tile = tileFor(id);
      const tracks = tracksOf(id);
      attach(tile.querySelector("video"), tracks.video);
      attach(tile.querySelector("audio"), tracks.audio);
      const flags = [];
      if (p.reconnecting) flags.push(t("reconnectingTile"));
      if (p.audio === false) flags.push(t("muted"));
      if (p.video === false) flags.push(t("cameraIsOff"));
      if (p.quality && p.quality !== "good") flags.push(t(`quality.${p.quality}`));
      if (p.unsupported) flags.push(t("videoUnsupported", { codec: p.unsupported }));
      tile.querySelector("figcaption").textContent =
        label(p) + (flags.length ? ` (${flags.join(", ")})` : "");
      tile.dataset.quality = p.quality || "";
      tile.classList.toggle("camera-off", p.video === false);
      tile.classList.toggle("reconnecting", Boolean(p.reconnecting));
      const mute = tile.querySelector(".ask-mute");
      if (mute) mute.textContent = t("askMute");
      const remove = tile.querySelector(".remove");
      if (remove) {
        remove.textContent = t("remove");
        remove.setAttribute("aria-label", `${t("remove")} ${label(p)}`);
      }
      const pin = tile.querySelector(".pin");
      const pinned = tile.dataset.stage === "true";
      pin.setAttribute("aria-pressed", String(pinned));
      pin.setAttribute("aria-label", t(pinned ? "unpin" : "pin", { name: label(p) }));
    }
    $("alone").hidden = tiles.children.length > 0;
    renderSideToggle();
    if (state.pc && !state.fatal) {
      const inCall = state.participants.size ? "inCall" : "waitingForOthers";
      setStatus(
        state.shutdown ||
          (state.deviceNotice && !state.participants.size ? state.deviceNotice : inCall),
      );
    }
    if (state.hooks.render) state.hooks.render();
  }

  function addChat(msg) {
    const who = state.participants.get(msg.participant) ||
      (state.me && msg.participant === state.me.participant ? { role: "you" } : null);
    const item = document.createElement("li");
    const from = document.createElement("strong");
    from.textContent = who && who.role !== "you" ? label(who) : t("you");
    item.append(from, document.createTextNode(`: ${msg.text}`));
    $("chat-log").append(item);
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

  async function confirmLeave() {
    const yes = await confirm.ask({
      title: t("confirmLeaveTitle"),
      text: t("confirmLeaveText"),
      yes: t("confirmLeaveYes"),
    });
    if (yes) leave();
  }

  function leave() {
    state.leaving = true;
    sessionStorage.removeItem(joinedKey);
    send({ type: "leave" });
    closePeer();
    if (state.ws) state.ws.close();
    showView("left");
    offerSurvey();
  }

  // --- end of the visit: the host's outcome, the citizen's experience -----------------------

  function askOutcome() {
    const choices = $("outcome-choices");
    choices.textContent = "";
    for (const [i, code] of state.outcomes.entries()) {
      const label = document.createElement("label");
      const input = document.createElement("input");
      input.type = "radio";
      input.name = "outcome";
      input.value = code;
      input.required = true;
      input.checked = i === 0;
      const known = TEXTS[state.lang].outcomes[code];
      label.append(input, document.createTextNode(` ${known || code}`));
      choices.append(label);
    }
    $("outcome-dialog").showModal();
  }

  // The outcome is "saved" only once the server says it is durable (committed, or fsync'd to its
  // outbox); until then the page says so and sends it again. The visit ends only after that.
  function outcomeStatus(key) {
    const el = $("outcome-status");
    if (state.outcome) state.outcome.status = key;
    el.dataset.state = key || "";
    el.textContent = key ? t(key) : "";
  }

  function submitOutcome(event) {
    event.preventDefault(); // the dialog stays open until the outcome is saved
    const chosen = document.querySelector("#outcome-form input[name=outcome]:checked");
    if (!chosen || (state.outcome && !state.outcome.saved)) return;
    const note = $("outcome-note").value.trim();
    state.outcome = { outcome: chosen.value, note, ref: `outcome-${Date.now()}`, attempts: 0, saved: false };
    $("outcome-submit").disabled = true;
    $("outcome-cancel").disabled = true;
    sendOutcome();
  }

  function sendOutcome() {
    const o = state.outcome;
    if (!o || o.saved) return;
    clearTimeout(o.timer);
    o.attempts += 1;
    outcomeStatus(o.attempts > 1 ? "outcomeRetrying" : "outcomeSaving");
    send({ type: "outcome", outcome: o.outcome, ...(o.note ? { note: o.note } : {}), id: o.ref });
    o.timer = setTimeout(outcomeNotSaved, OUTCOME_ACK_MS);
  }

  function outcomeNotSaved() {
    const o = state.outcome;
    if (!o || o.saved) return;
    clearTimeout(o.timer);
    outcomeStatus("outcomeNotSaved");
    const delay = RECONNECT_DELAYS_MS[Math.min(o.attempts - 1, RECONNECT_DELAYS_MS.length - 1)];
    o.timer = setTimeout(sendOutcome, delay);
  }

  function outcomeSaved(msg) {
    const o = state.outcome;
    if (!o || msg.ref !== o.ref || o.saved) return;
    clearTimeout(o.timer);
    o.saved = true;
    outcomeStatus("outcomeSaved");
    send({ type: "end" });
  }

  function outcomeRefused(msg) {
    if (msg.code === "outcome-not-saved") return outcomeNotSaved();
    // Refused for good (not the host, an unknown code): say why, and let them choose again.
    clearTimeout(state.outcome.timer);
    state.outcome = null;
    outcomeStatus("");
    $("outcome-submit").disabled = false;
    $("outcome-cancel").disabled = false;
    return showError(msg.code, msg.message);
  }

  function offerSurvey() {
    if (!state.me || state.me.role !== "citizen" || state.surveyShown) return;
    state.surveyShown = true;
    for (const fieldset of document.querySelectorAll("#survey .scale")) {
      for (const value of [1, 2, 3, 4, 5]) {
        const label = document.createElement("label");
        const input = document.createElement("input");
        input.type = "radio";
        input.name = fieldset.dataset.question;
        input.value = String(value);
        label.append(input, document.createTextNode(` ${value}`));
        fieldset.append(label);
      }
    }
    $("survey").hidden = false;
  }

  async function sendSurvey(event) {
    event.preventDefault();
    const answers = {};
    for (const question of ["q1", "q2", "q3"]) {
      const chosen = document.querySelector(`#survey input[name=${question}]:checked`);
      if (chosen) answers[question] = Number(chosen.value);
    }
    const response = await fetch(`/api/visits/${encodeURIComponent(visitId)}/survey`, {
      method: "POST",
      headers: { "Content-Type": "application/json", Authorization: `Bearer ${token}` },
      body: JSON.stringify(answers),
    });
    if (response.ok) {
      $("survey-thanks").hidden = false;
      for (const input of document.querySelectorAll("#survey input, #survey button")) input.disabled = true;
    }
  }

  // --- start --------------------------------------------------------------------------------

  for (const el of document.querySelectorAll("[data-set-lang]")) {
    el.addEventListener("click", () => {
      state.lang = el.dataset.setLang;
      localStorage.setItem("screenvisit-lang", state.lang);
      applyTexts();
      renderWaiting();
    });
  }
  $("join").addEventListener("click", () => {
    state.metrics.joinPressedMs = performance.now();
    connect();
  });
  stage.init();
  $("tiles").addEventListener("stagechange", render);
  $("self-move").addEventListener("click", stage.nextCorner);
  $("self-toggle").addEventListener("click", () => {
    const on = $("self-toggle").getAttribute("aria-pressed") !== "true";
    $("self-toggle").setAttribute("aria-pressed", String(on));
    stage.showSelf(on);
  });
  $("side-toggle").addEventListener("click", () => {
    const open = $("side-toggle").getAttribute("aria-expanded") !== "true";
    $("side-toggle").setAttribute("aria-expanded", String(open));
    $("call").classList.toggle("side-open", open);
    stage.relayout();
  });
  $("fullscreen").hidden = !stage.fullscreenAvailable();
  $("fullscreen").addEventListener("click", () => stage.toggleFullscreen());
  document.addEventListener("fullscreenchange", () => {
    $("fullscreen").setAttribute("aria-pressed", String(Boolean(document.fullscreenElement)));
  });
  $("switch-camera").addEventListener("click", nextCamera);
  $("pick-camera").addEventListener("change", (e) => {
    precall.remember("camera", e.target.value);
    switchTrack("video");
  });
  $("pick-mic").addEventListener("change", (e) => {
    precall.remember("mic", e.target.value);
    switchTrack("audio");
  });
  $("pick-speaker").addEventListener("change", (e) => {
    precall.remember("speaker", e.target.value);
    precall.applySpeaker(e.target.value);
  });
  $("device-retry").addEventListener("click", startPreview);
  $("net-test").addEventListener("click", runConnectionTest);
  $("conn-retry").addEventListener("click", retryConnection);
  $("mute").addEventListener("click", () => toggle("audio"));
  $("camera").addEventListener("click", () => toggle("video"));
  $("leave").addEventListener("click", confirmLeave);
  $("rejoin").addEventListener("click", () => location.reload());
  $("admit-all").addEventListener("click", () => send({ type: "admit-all" }));
  $("end").addEventListener("click", askOutcome);
  $("outcome-cancel").addEventListener("click", () => $("outcome-dialog").close());
  $("outcome-form").addEventListener("submit", submitOutcome);
  $("outcome-dialog").addEventListener("cancel", (event) => {
    // Escape must not hide an outcome that is still being saved.
    if (state.outcome && !state.outcome.saved) event.preventDefault();
  });
  $("survey").addEventListener("submit", sendSurvey);
  $("phone").addEventListener("click", () => send({ type: "fallback-phone" }));
  $("assisting").addEventListener("change", (e) => send({ type: "assisting", on: e.target.checked }));
  $("chat-form").addEventListener("submit", (event) => {
    event.preventDefault();
    const input = $("chat-text");
    if (input.value.trim()) send({ type: "chat", text: input.value.trim() });
    input.value = "";
  });
  applyTexts();

  $("end-action").addEventListener("click", () => {
    // No server: try again from here, with the call's state as it is; otherwise a fresh page.
    if (state.endState && state.endState.name === "shutdown" && state.unreachable) retryConnection();
    else location.reload();
  });
  if (!token) {
    showEndState("invalid", { code: "no-token" });
    return;
  }
  start();
})();

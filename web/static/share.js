"use strict";
// Showing, not only telling: a shared screen (getDisplayMedia) and a second camera (a back
// camera, a USB otoscope) beside the face camera. Each is a track of its own, announced to the
// server by mid in the offer's `sources`; the server forwards it as a track of its own and
// refuses a source the seat may not publish (`sources` of `joined`). Hooks into join.js through
// window.screenvisit.hooks; the call layout keeps its own code.
(() => {
  const state = window.screenvisit;
  if (!state || !state.hooks) return;
  const { api, hooks } = state;
  const $ = (id) => document.getElementById(id);
  const EXTRA = ["screen", "camera2"];

  const TEXTS = {
    da: {
      share: "Del skærm",
      stopShare: "Stop deling",
      addCamera: "Tilføj kamera",
      removeCamera: "Fjern ekstra kamera",
      switchCamera: "Skift kamera",
      pickCamera: "Vælg kamera",
      noOtherCamera: "Der er ikke fundet et kamera mere.",
      shareRefused: "Skærmdeling blev ikke startet.",
      sharing: "{role} deler skærm",
      secondCamera: "{role} · ekstra kamera",
      youShare: "Du deler skærm",
      yourSecondCamera: "Dit ekstra kamera",
    },
    en: {
      share: "Share screen",
      stopShare: "Stop sharing",
      addCamera: "Add camera",
      removeCamera: "Remove second camera",
      switchCamera: "Switch camera",
      pickCamera: "Choose camera",
      noOtherCamera: "No other camera was found.",
      shareRefused: "Screen sharing did not start.",
      sharing: "{role} is sharing their screen",
      secondCamera: "{role} · second camera",
      youShare: "You are sharing your screen",
      yourSecondCamera: "Your second camera",
    },
  };

  // source -> {track, transceiver} of what this page sends besides its camera and microphone.
  const mine = { screen: null, camera2: null };
  // source -> the transceiver it was last sent on (kept inactive between shares, reused).
  const senders = {};
  let allowed = new Set();
  state.share = { mine, allowed: () => allowed };

  function tt(key, vars = {}) {
    const text = (TEXTS[state.lang] || TEXTS.da)[key] || key;
    return text.replace(/\{(\w+)\}/g, (_, name) => (vars[name] !== undefined ? vars[name] : ""));
  }

  // --- sending --------------------------------------------------------------------------------

  function send(source, track) {
    // Put `track` (or nothing) on the source's own transceiver; the next offer says so.
    const pc = state.pc;
    if (!pc) return;
    let tr = senders[source];
    if (tr && pc.getTransceivers().includes(tr)) {
      tr.sender.replaceTrack(track);
      tr.direction = track ? "sendonly" : "inactive";
    } else if (track) {
      tr = pc.addTransceiver(track, { direction: "sendonly" });
      api.preferForwardedCodecs(tr, "video");
      senders[source] = tr;
    }
  }

  async function tune(source) {
    // Screen content: keep its resolution (text stays legible) and let the frame rate give.
    const tr = senders[source];
    if (!tr || !tr.sender.getParameters) return;
    try {
      const params = tr.sender.getParameters();
      if (source === "screen") params.degradationPreference = "maintain-resolution";
      await tr.sender.setParameters(params);
    } catch (err) {
      // Not every browser takes it; the content hint still asks for detail.
    }
  }

  async function start(source, track) {
    if (mine[source]) stop(source, false);
    mine[source] = { track };
    track.addEventListener("ended", () => {
      // The browser's own "stop sharing" bar, or the device unplugged.
      if (mine[source] && mine[source].track === track) stop(source);
    });
    send(source, track);
    renderAll();
    await api.negotiate();
    await tune(source);
  }

  function stop(source, negotiate = true) {
    const entry = mine[source];
    if (!entry) return;
    mine[source] = null;
    entry.track.stop();
    send(source, null);
    renderAll();
    if (negotiate) api.negotiate();
  }

  async function shareScreen() {
    if (mine.screen) return stop("screen");
    let stream;
    try {
      stream = await navigator.mediaDevices.getDisplayMedia({
        video: { frameRate: { ideal: 15, max: 30 } },
        audio: false,
      });
    } catch (err) {
      return notice(tt("shareRefused"));
    }
    const track = stream.getVideoTracks()[0];
    if ("contentHint" in track) track.contentHint = "detail";
    return start("screen", track);
  }

  async function cameras() {
    const devices = await navigator.mediaDevices.enumerateDevices();
    const inUse = state.local && state.local.getVideoTracks()[0];
    const current = inUse ? inUse.getSettings().deviceId : null;
    return devices.filter((d) => d.kind === "videoinput" && d.deviceId !== current);
  }

  async function addCamera() {
    if (mine.camera2) return stop("camera2");
    const picker = $("camera2-picker");
    const others = await cameras();
    if (!others.length) return notice(tt("noOtherCamera"));
    if (others.length > 1 && picker.hidden) {
      picker.replaceChildren(
        new Option(tt("pickCamera"), ""),
        ...others.map((d, i) => new Option(d.label || `${tt("addCamera")} ${i + 1}`, d.deviceId)),
      );
      picker.hidden = false;
      picker.focus();
      return undefined;
    }
    return openCamera(others[0].deviceId);
  }

  async function openCamera(deviceId) {
    $("camera2-picker").hidden = true;
    const video = { deviceId: { exact: deviceId }, width: { ideal: 1280 }, height: { ideal: 720 } };
    let track;
    try {
      track = (await navigator.mediaDevices.getUserMedia({ video })).getVideoTracks()[0];
    } catch (err) {
      // A phone that cannot run two cameras at once: switch the face camera instead.
      return switchCamera(deviceId);
    }
    return start("camera2", track);
  }

  async function switchCamera(deviceId) {
    // The quick switch: the camera track that is sent is replaced, no renegotiation.
    const old = state.local && state.local.getVideoTracks()[0];
    if (!old || !state.pc) return;
    const target = deviceId ? { deviceId: { exact: deviceId } } : { facingMode: nextFacing(old) };
    const sender = state.pc.getSenders().find((s) => s.track === old);
    old.stop();
    let track;
    try {
      track = (await navigator.mediaDevices.getUserMedia({ video: target })).getVideoTracks()[0];
    } catch (err) {
      return notice(tt("noOtherCamera"));
    }
    if (sender) await sender.replaceTrack(track);
    state.local.removeTrack(old);
    state.local.addTrack(track);
    $("self").srcObject = state.local;
  }

  function nextFacing(track) {
    const facing = track.getSettings().facingMode;
    return facing === "environment" ? "user" : "environment";
  }

  function notice(text) {
    const status = $("status");
    if (status) status.textContent = text;
  }

  // --- hooks into join.js ---------------------------------------------------------------------

  hooks.offer = () => {
    const sources = {};
    for (const source of EXTRA) {
      const tr = senders[source];
      if (tr && tr.mid && state.pc && state.pc.getTransceivers().includes(tr)) sources[tr.mid] = source;
    }
    return Object.keys(sources).length ? { sources } : {};
  };

  hooks.peer = () => {
    // A new peer connection (joining, a media restart): what was shown is shown again.
    for (const source of EXTRA) {
      delete senders[source];
      if (mine[source]) send(source, mine[source].track);
    }
  };

  hooks.joined = (msg) => {
    allowed = new Set(msg.sources || []);
    renderButtons();
  };

  hooks.render = () => renderAll();

  // --- drawing --------------------------------------------------------------------------------

  function roleName(participant) {
    const p = state.participants.get(participant);
    return p ? api.t(`roles.${p.role}`) : "";
  }

  function tile(id, participant, source, stage) {
    let el = document.getElementById(id);
    if (!el) {
      el = document.createElement("figure");
      el.id = id;
      el.className = `tile remote tile--${source}`;
      el.dataset.participant = participant;
      el.dataset.source = source;
      if (stage) el.dataset.stage = "true";
      const video = document.createElement("video");
      video.autoplay = true;
      video.muted = true;
      video.playsInline = true;
      el.append(video, document.createElement("figcaption"));
    }
    return el;
  }

  function attach(video, track) {
    const current = video.srcObject && video.srcObject.getTracks()[0];
    if (current !== track) {
      video.srcObject = track ? new MediaStream([track]) : null;
      if (track) video.play().catch(() => {});
    }
  }

  function renderRemote() {
    const tiles = $("tiles");
    if (!tiles) return;
    const wanted = new Map();
    for (const [mid, entry] of Object.entries(state.tracks || {})) {
      if (!entry || !EXTRA.includes(entry.source) || !state.trackByMid.has(mid)) continue;
      if (!state.participants.has(entry.participant)) continue;
      wanted.set(`share-${entry.participant}-${entry.source}`, { ...entry, mid });
    }
    for (const el of [...tiles.querySelectorAll(".tile--screen, .tile--camera2")]) {
      if (!wanted.has(el.id)) el.remove();
    }
    for (const [id, entry] of wanted) {
      const screen = entry.source === "screen";
      const el = tile(id, entry.participant, entry.source, screen);
      if (screen && tiles.firstElementChild !== el) tiles.prepend(el);
      else if (!el.isConnected) tiles.append(el);
      attach(el.querySelector("video"), state.trackByMid.get(entry.mid));
      el.querySelector("figcaption").textContent = tt(screen ? "sharing" : "secondCamera", {
        role: roleName(entry.participant),
      });
    }
    tiles.classList.toggle("has-stage", Boolean(tiles.querySelector('[data-stage="true"]')));
  }

  function renderOwn() {
    // What this page shows the others, as small previews beside "Dig".
    const selfTile = $("self-tile");
    if (!selfTile) return;
    let box = $("share-self");
    if (!box) {
      box = document.createElement("div");
      box.id = "share-self";
      box.className = "share-self";
      selfTile.after(box);
    }
    for (const source of EXTRA) {
      const id = `share-own-${source}`;
      let el = document.getElementById(id);
      if (!mine[source]) {
        if (el) el.remove();
        continue;
      }
      if (!el) {
        el = document.createElement("figure");
        el.id = id;
        el.className = `tile self-share tile--own-${source}`;
        const video = document.createElement("video");
        video.autoplay = true;
        video.muted = true;
        video.playsInline = true;
        el.append(video, document.createElement("figcaption"));
        box.append(el);
      }
      attach(el.querySelector("video"), mine[source].track);
      el.querySelector("figcaption").textContent = tt(source === "screen" ? "youShare" : "yourSecondCamera");
    }
  }

  function renderButtons() {
    const controls = document.querySelector("#call .controls") || document.querySelector(".controls");
    if (!controls) return;
    if (!$("share-screen")) {
      const shareBtn = document.createElement("button");
      shareBtn.type = "button";
      shareBtn.id = "share-screen";
      shareBtn.addEventListener("click", shareScreen);
      const cameraBtn = document.createElement("button");
      cameraBtn.type = "button";
      cameraBtn.id = "add-camera";
      cameraBtn.addEventListener("click", addCamera);
      const picker = document.createElement("select");
      picker.id = "camera2-picker";
      picker.hidden = true;
      picker.addEventListener("change", () => {
        if (picker.value) openCamera(picker.value);
      });
      const leave = $("leave");
      controls.insertBefore(shareBtn, leave);
      controls.insertBefore(cameraBtn, leave);
      controls.insertBefore(picker, leave);
    }
    const screenOk = Boolean(navigator.mediaDevices && navigator.mediaDevices.getDisplayMedia);
    const shareBtn = $("share-screen");
    shareBtn.hidden = !(allowed.has("screen") && screenOk);
    shareBtn.textContent = tt(mine.screen ? "stopShare" : "share");
    shareBtn.setAttribute("aria-pressed", String(Boolean(mine.screen)));
    const cameraBtn = $("add-camera");
    cameraBtn.hidden = !allowed.has("camera2");
    cameraBtn.textContent = tt(mine.camera2 ? "removeCamera" : "addCamera");
    cameraBtn.setAttribute("aria-pressed", String(Boolean(mine.camera2)));
    $("camera2-picker").setAttribute("aria-label", tt("pickCamera"));
  }

  function renderAll() {
    renderRemote();
    renderOwn();
    if (allowed.size) renderButtons();
  }
})();

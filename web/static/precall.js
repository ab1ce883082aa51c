"use strict";
// The pre-call check: devices (with what to do when the browser refuses them), the device
// pickers remembered on this device, a microphone level meter and a short connection test
// against this server.
window.screenvisitPrecall = (() => {
  const PREFS = "screenvisit-devices";
  const VIDEO = { width: { ideal: 640 }, height: { ideal: 480 } };
  let meter = null; // {context, source, analyser, frame}

  function prefs() {
    try {
      return JSON.parse(localStorage.getItem(PREFS)) || {};
    } catch (err) {
      return {};
    }
  }

  function remember(kind, deviceId) {
    localStorage.setItem(PREFS, JSON.stringify({ ...prefs(), [kind]: deviceId }));
  }

  // The remembered device if it is still there ("ideal"); the one just picked ("exact").
  function videoConstraints(extra = {}, how = "ideal") {
    const camera = prefs().camera;
    return { ...VIDEO, ...(camera ? { deviceId: { [how]: camera } } : {}), ...extra };
  }

  function audioConstraints(how = "ideal") {
    const mic = prefs().mic;
    return mic ? { deviceId: { [how]: mic } } : true;
  }

  /**
   * Camera and microphone, the microphone alone, the camera alone, or nothing: the
   * participant joins with whatever there is. Says what was refused and what is missing.
   */
  async function openDevices() {
    const result = { stream: null, refused: false, missing: false };
    if (!navigator.mediaDevices || !navigator.mediaDevices.getUserMedia) {
      result.missing = true;
      return result;
    }
    if (prefs().camera || prefs().mic) {
      // Exactly the devices chosen before, when they are all still there.
      try {
        result.stream = await navigator.mediaDevices.getUserMedia({
          audio: audioConstraints("exact"), video: videoConstraints({}, "exact"),
        });
        return result;
      } catch (err) {
        result.stream = null;
      }
    }
    const asks = [
      { audio: audioConstraints(), video: videoConstraints() },
      { audio: audioConstraints() },
      { video: videoConstraints() },
    ];
    for (const constraints of asks) {
      try {
        result.stream = await navigator.mediaDevices.getUserMedia(constraints);
        break;
      } catch (err) {
        if (err && (err.name === "NotAllowedError" || err.name === "SecurityError")) result.refused = true;
        else result.missing = true;
      }
    }
    return result;
  }

  /** A new track of `kind` from the chosen (or the other-facing) device. */
  async function openTrack(kind, extra) {
    // Front or back (`extra` facingMode) of any camera, or exactly the one picked.
    const constraints = kind === "video"
      ? { video: extra ? { ...VIDEO, ...extra } : videoConstraints({}, "exact") }
      : { audio: audioConstraints("exact") };
    const stream = await navigator.mediaDevices.getUserMedia(constraints);
    return stream.getTracks()[0];
  }

  /** Which browser's way of allowing access to show: chrome (also Edge), firefox, safari. */
  function browserFamily() {
    const ua = navigator.userAgent;
    if (/Firefox\//.test(ua)) return "firefox";
    if (/Edg\/|Chrome\/|Chromium\/|CriOS\//.test(ua)) return "chrome";
    if (/Safari\//.test(ua)) return "safari";
    return "other";
  }

  async function devices() {
    if (!navigator.mediaDevices || !navigator.mediaDevices.enumerateDevices) return [];
    try {
      return await navigator.mediaDevices.enumerateDevices();
    } catch (err) {
      return [];
    }
  }

  /**
   * Fill a <select> with the devices of `kind`, the one in use (or remembered) selected.
   * Returns how many there are.
   */
  function fillPicker(select, list, kind, current, t) {
    const names = { videoinput: t("pickCamera"), audioinput: t("pickMic"), audiooutput: t("pickSpeaker") };
    select.textContent = "";
    const of = list.filter((d) => d.kind === kind && d.deviceId);
    of.forEach((d, i) => {
      const option = document.createElement("option");
      option.value = d.deviceId;
      option.textContent = d.label || t("deviceUnnamed", { kind: names[kind], n: i + 1 });
      option.selected = d.deviceId === current;
      select.append(option);
    });
    if (!of.length) {
      const option = document.createElement("option");
      option.value = "";
      option.textContent = t("noDevice");
      select.append(option);
    }
    return of.length;
  }

  function speakerSupported() {
    return typeof HTMLMediaElement !== "undefined" && "setSinkId" in HTMLMediaElement.prototype;
  }

  /** Play sound through the chosen speaker, in every <audio> there is now. */
  function applySpeaker(deviceId) {
    if (!speakerSupported() || !deviceId) return;
    for (const el of document.querySelectorAll("audio")) el.setSinkId(deviceId).catch(() => {});
  }

  function stopMeter() {
    if (!meter) return;
    cancelAnimationFrame(meter.frame);
    meter.source.disconnect();
    meter.context.close().catch(() => {});
    meter = null;
  }

  /** Show the level of `track` (a microphone) in the <meter> `el`, until stopped. */
  function startMeter(track, el) {
    stopMeter();
    const AudioContextClass = window.AudioContext || window.webkitAudioContext;
    if (!track || !AudioContextClass) return;
    const context = new AudioContextClass();
    const source = context.createMediaStreamSource(new MediaStream([track]));
    const analyser = context.createAnalyser();
    analyser.fftSize = 1024;
    source.connect(analyser);
    const samples = new Float32Array(analyser.fftSize);
    meter = { context, source, analyser, frame: 0 };
    // Started before any tap on the page, the context may wait for one.
    const resume = () => context.state === "suspended" && context.resume().catch(() => {});
    resume();
    document.addEventListener("pointerdown", resume, { once: true });
    document.addEventListener("keydown", resume, { once: true });
    const draw = () => {
      analyser.getFloatTimeDomainData(samples);
      let sum = 0;
      for (const s of samples) sum += s * s;
      const rms = Math.sqrt(sum / samples.length);
      // Speech sits around -30 dBFS: map -60..0 dB onto 0..1.
      const db = 20 * Math.log10(rms || 1e-6);
      el.value = Math.max(0, Math.min(1, (db + 60) / 60));
      meter.frame = requestAnimationFrame(draw);
    };
    draw();
  }

  function timeout(ms) {
    return new Promise((resolve) => setTimeout(resolve, ms));
  }

  async function roundTrip() {
    const times = [];
    for (let i = 0; i < 5; i += 1) {
      const start = performance.now();
      const response = await fetch("/api/connection-test?bytes=0", { cache: "no-store" });
      await response.arrayBuffer();
      if (!response.ok) throw new Error(`HTTP ${response.status}`);
      times.push(performance.now() - start);
    }
    // The first includes setting up the connection.
    const rest = times.slice(1).sort((a, b) => a - b);
    return rest[Math.floor(rest.length / 2)];
  }

  async function downloadRate(limitMs) {
    // Bytes that arrive within the limit, over the time they took: Mbit/s.
    const controller = new AbortController();
    const start = performance.now();
    const stop = setTimeout(() => controller.abort(), limitMs);
    let bytes = 0;
    try {
      const response = await fetch("/api/connection-test?bytes=524288", {
        cache: "no-store",
        signal: controller.signal,
      });
      const reader = response.body.getReader();
      for (;;) {
        const { done, value } = await reader.read();
        if (done) break;
        bytes += value.length;
      }
    } catch (err) {
      if (!bytes) throw err;
    } finally {
      clearTimeout(stop);
    }
    const seconds = Math.max((performance.now() - start) / 1000, 0.001);
    return (bytes * 8) / seconds / 1e6;
  }

  async function udpReachability(iceServers, limitMs) {
    // Gathering against the server's STUN/TURN: a server-reflexive candidate means UDP gets
    // out; a relay one only, that the call will go through TURN.
    if (!iceServers || !iceServers.length) return "untested";
    const pc = new RTCPeerConnection({ iceServers });
    const types = new Set();
    try {
      pc.createDataChannel("test");
      pc.onicecandidate = (event) => {
        if (event.candidate && event.candidate.type) types.add(event.candidate.type);
      };
      await pc.setLocalDescription(await pc.createOffer());
      const complete = new Promise((resolve) => {
        pc.onicegatheringstatechange = () => pc.iceGatheringState === "complete" && resolve();
      });
      await Promise.race([complete, timeout(limitMs)]);
    } finally {
      pc.close();
    }
    if (types.has("srflx")) return "ok";
    return types.has("relay") ? "relay" : "blocked";
  }

  /** The connection test: {verdict, rttMs, mbit, udp}; verdict netGood, netWeak or netFailed. */
  async function testConnection(iceServers) {
    const result = { verdict: "netFailed", rttMs: null, mbit: null, udp: "untested" };
    try {
      const [rtt, udp] = await Promise.all([roundTrip(), udpReachability(iceServers, 4000)]);
      result.rttMs = Math.round(rtt);
      result.udp = udp;
      result.mbit = await downloadRate(4000);
    } catch (err) {
      return result;
    }
    const weak = result.rttMs > 300 || result.mbit < 1.5 || result.udp === "blocked";
    result.verdict = weak ? "netWeak" : "netGood";
    return result;
  }

  return {
    prefs, remember, openDevices, openTrack, browserFamily, devices, fillPicker,
    speakerSupported, applySpeaker, startMeter, stopMeter, testConnection,
  };
})();

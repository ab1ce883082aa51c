"use strict";
// The staff console: sign-in with a one-time link, the organisation's visits live (Server-Sent
// Events), booking, links (copy, QR code, calendar), reschedule, cancel, join as host.
(function () {
  const TEXTS = window.SCREENVISIT_CONSOLE_TEXTS;
  const body = document.body;
  const HOST_ROLES = new Set(["gp", "specialist"]);
  const state = {
    lang: pickLanguage(),
    role: body.dataset.role || "",
    csrf: body.dataset.csrf || "",
    visits: [],
    links: new Map(), // visit id -> Map(participant -> url)
    waiting: null, // keys of seats seen waiting; null until the first snapshot
    skew: 0,
    audio: null,
  };
  // For tests and for the curious: counters, never personal data.
  window.screenvisitConsole = { snapshots: 0, chimes: 0, copied: 0 };
  const $ = (id) => document.getElementById(id);

  function pickLanguage() {
    const asked = new URLSearchParams(location.search).get("lang");
    const stored = localStorage.getItem("screenvisit-lang");
    const lang = asked || stored || body.dataset.lang || "da";
    return TEXTS[lang] ? lang : "da";
  }

  function t(key, vars) {
    let text = TEXTS[state.lang][key];
    if (text === undefined) text = TEXTS.da[key] || key;
    for (const [name, value] of Object.entries(vars || {})) text = text.replace(`{${name}}`, value);
    return text;
  }

  function errorText(code) {
    const errors = TEXTS[state.lang].errors;
    return errors[code] || errors.default.replace("{code}", code);
  }

  function applyLanguage() {
    document.documentElement.lang = state.lang;
    for (const el of document.querySelectorAll("[data-i18n]")) el.textContent = t(el.dataset.i18n);
    for (const el of document.querySelectorAll("[data-role-label]")) {
      el.textContent = t("role_" + el.dataset.roleLabel);
    }
    for (const el of document.querySelectorAll("[data-set-lang]")) {
      el.setAttribute("aria-pressed", String(el.dataset.setLang === state.lang));
    }
    const signinError = $("signin-error");
    if (signinError && signinError.dataset.code) signinError.textContent = errorText(signinError.dataset.code);
    if (state.visits.length || state.waiting !== null) render();
  }

  function say(text) {
    $("status").textContent = text;
  }

  function fail(code) {
    const box = $("error") || $("signin-error");
    box.textContent = errorText(code);
    box.hidden = false;
  }

  // --- the API, with the session cookie and its CSRF header ----------------------------------

  async function api(method, path, payload) {
    const headers = { "X-CSRF-Token": state.csrf };
    if (payload !== undefined) headers["Content-Type"] = "application/json";
    const response = await fetch(path, {
      method,
      headers,
      credentials: "same-origin",
      body: payload === undefined ? undefined : JSON.stringify(payload),
    });
    const data = await response.json().catch(() => ({}));
    if (!response.ok) {
      const code = (data.error && data.error.code) || "http-" + response.status;
      const err = new Error(code);
      err.code = code;
      throw err;
    }
    return data;
  }

  async function run(action) {
    $("error").hidden = true;
    try {
      await action();
    } catch (err) {
      fail(err.code || "network");
    }
  }

  // --- sign-in with a one-time link ---------------------------------------------------------

  async function signInWithLink(token) {
    history.replaceState(null, "", location.pathname + location.search);
    $("signin-status").textContent = t("signingIn");
    const response = await fetch("/console/session", {
      method: "POST",
      headers: { "Content-Type": "application/json" },
      credentials: "same-origin",
      body: JSON.stringify({ token }),
    });
    if (response.ok) {
      location.replace("/console");
      return;
    }
    const data = await response.json().catch(() => ({}));
    $("signin-status").textContent = "";
    fail((data.error && data.error.code) || "http-" + response.status);
  }

  // --- the live feed ------------------------------------------------------------------------

  function connect() {
    const source = new EventSource("/console/events");
    source.addEventListener("visits", (event) => {
      const data = JSON.parse(event.data);
      state.skew = data.now * 1000 - Date.now();
      state.visits = data.visits;
      window.screenvisitConsole.snapshots += 1;
      $("live").textContent = t("live");
      noticeArrivals();
      render();
    });
    source.addEventListener("error", () => {
      $("live").textContent = t("offline");
      // A refused stream (the session expired or was revoked) is not retried by the browser.
      if (source.readyState === EventSource.CLOSED) fail("not-signed-in");
    });
  }

  function noticeArrivals() {
    const now = new Set();
    let newest = null;
    for (const visit of state.visits) {
      for (const seat of visit.seats) {
        if (seat.status !== "waiting") continue;
        const key = `${visit.id}/${seat.participant}/${seat.since}`;
        now.add(key);
        if (state.waiting !== null && !state.waiting.has(key)) newest = { visit, seat };
      }
    }
    if (newest) {
      const notice = $("arrival");
      notice.textContent = t("waitingFor", {
        role: label(newest.seat),
        when: when(newest.visit),
      });
      notice.hidden = false;
      chime();
    }
    state.waiting = now;
  }

  function chime() {
    // The same two notes as the call page's arrival sound (chime.js).
    window.screenvisitConsole.chimes += 1;
    window.screenvisitChime();
  }


  // --- rendering ----------------------------------------------------------------------------

  function label(seat) {
    const role = t("role_" + seat.role);
    return seat.name ? `${seat.name} (${role})` : role;
  }

  function locale() {
    return state.lang === "da" ? "da-DK" : "en-GB";
  }

  function when(visit) {
    if (visit.planned_start === null) return t("unplanned");
    const start = new Date(visit.planned_start * 1000);
    const sameDay = start.toDateString() === new Date().toDateString();
    const options = sameDay
      ? { hour: "2-digit", minute: "2-digit" }
      : { weekday: "short", day: "numeric", month: "short", hour: "2-digit", minute: "2-digit" };
    return start.toLocaleString(locale(), options);
  }

  function waited(since) {
    const seconds = Math.max(0, (Date.now() + state.skew) / 1000 - since);
    const minutes = Math.floor(seconds / 60);
    return minutes < 1 ? t("seconds") : t("minutesShort", { n: minutes });
  }

  function isHost(visit) {
    return HOST_ROLES.has(state.role) || (state.role === "nurse" && visit.kind === "assisted");
  }

  function isToday(visit) {
    if (visit.planned_start === null) return true;
    const end = new Date();
    end.setHours(23, 59, 59, 999);
    return visit.planned_start * 1000 <= end.getTime();
  }

  function button(text, onClick, extraClass, about) {
    const el = document.createElement("button");
    el.type = "button";
    el.textContent = text;
    // Many buttons share a text; screen readers hear which seat or visit each one is for.
    if (about) el.setAttribute("aria-label", `${text}: ${about}`);
    if (extraClass) el.className = extraClass;
    el.addEventListener("click", onClick);
    return el;
  }

  function render() {
    const today = $("visits-today");
    const upcoming = $("visits-upcoming");
    if (!today) return;
    today.textContent = "";
    upcoming.textContent = "";
    for (const visit of state.visits) (isToday(visit) ? today : upcoming).append(visitCard(visit));
    for (const list of [today, upcoming]) {
      if (!list.children.length) {
        const empty = document.createElement("li");
        empty.className = "empty";
        empty.textContent = t("none");
        list.append(empty);
      }
    }
  }

  function visitCard(visit) {
    const item = document.createElement("li");
    item.className = `visit state-${visit.state}`;
    item.dataset.visit = visit.id;
    const live = visit.state === "scheduled" || visit.state === "open" || visit.state === "in-progress";
    const head = document.createElement("h4");
    head.textContent = `${when(visit)} · ${t("kind_" + visit.kind)}`;
    const meta = document.createElement("p");
    meta.className = "meta";
    meta.textContent = `${t("state_" + visit.state)} · ${visit.planned_minutes} min · ${
      visit.waiting_room ? t("waitingRoomOn") : t("waitingRoomOff")
    }`;
    item.append(head, meta);
    const host = isHost(visit);
    const seats = document.createElement("ul");
    seats.className = "seats";
    for (const seat of visit.seats) seats.append(seatRow(visit, seat, host && live));
    item.append(seats);
    if (!live) return item;
    if (!host) {
      const note = document.createElement("p");
      note.className = "meta";
      note.textContent = t("notHost");
      item.append(note);
      return item;
    }
    const tools = document.createElement("div");
    tools.className = "visit-tools";
    tools.append(button(t("joinHost"), () => run(() => joinAsHost(visit)), "primary-small join-host", when(visit)));
    if (visit.state !== "in-progress") {
      const moveId = `move-${visit.id}`;
      const moveLabel = document.createElement("label");
      moveLabel.htmlFor = moveId;
      moveLabel.textContent = t("rescheduleLabel");
      const move = document.createElement("input");
      move.type = "datetime-local";
      move.id = moveId;
      if (visit.planned_start !== null) move.value = localInput(new Date(visit.planned_start * 1000));
      tools.append(
        moveLabel,
        move,
        button(t("reschedule"), () => run(() => reschedule(visit, move.value)), "reschedule", when(visit)),
        button(t("cancel"), () => run(() => cancel(visit)), "danger cancel", when(visit)),
      );
    }
    item.append(tools);
    return item;
  }

  function seatRow(visit, seat, manage) {
    const row = document.createElement("li");
    row.dataset.participant = seat.participant;
    row.dataset.status = seat.status;
    const who = document.createElement("span");
    who.className = "who";
    who.textContent = label(seat);
    const status = document.createElement("span");
    status.className = `seat-status status-${seat.status}`;
    status.textContent = seat.status === "waiting"
      ? t("status_waiting", { minutes: waited(seat.since) })
      : t("status_" + seat.status);
    if (seat.status === "waiting") status.dataset.since = String(seat.since);
    row.append(who, status);
    if (manage) {
      const tools = document.createElement("span");
      tools.className = "seat-tools";
      tools.append(
        button(t("copy"), () => run(() => copyLink(visit, seat)), "small copy", label(seat)),
        button(t("qr"), () => run(() => showQr(visit, seat)), "small qr", label(seat)),
      );
      if (visit.planned_start !== null) {
        const ics = document.createElement("a");
        ics.className = "button small ics";
        ics.href = `/console/visits/${encodeURIComponent(visit.id)}/invite.ics?participant=${encodeURIComponent(seat.participant)}`;
        ics.download = `videobesog-${visit.id}.ics`;
        ics.textContent = t("ics");
        ics.setAttribute("aria-label", `${t("ics")}: ${label(seat)}`);
        tools.append(ics);
      }
      row.append(tools);
    }
    return row;
  }

  function tick() {
    for (const el of document.querySelectorAll(".seat-status[data-since]")) {
      el.textContent = t("status_waiting", { minutes: waited(Number(el.dataset.since)) });
    }
  }

  function localInput(date) {
    const pad = (n) => String(n).padStart(2, "0");
    return `${date.getFullYear()}-${pad(date.getMonth() + 1)}-${pad(date.getDate())}T${pad(
      date.getHours(),
    )}:${pad(date.getMinutes())}`;
  }

  // --- actions ------------------------------------------------------------------------------

  async function linkFor(visit, participant) {
    let links = state.links.get(visit.id);
    if (!links || !links.has(participant)) {
      const data = await api("POST", `/api/visits/${encodeURIComponent(visit.id)}/links`);
      links = new Map(data.participants.map((p) => [p.participant, p.url]));
      state.links.set(visit.id, links);
    }
    return links.get(participant);
  }

  async function copyLink(visit, seat) {
    const url = await linkFor(visit, seat.participant);
    try {
      await navigator.clipboard.writeText(url);
      window.screenvisitConsole.copied += 1;
      say(t("copied", { role: t("role_" + seat.role) }));
    } catch (err) {
      say(t("copyFailed", { url }));
    }
  }

  async function showQr(visit, seat) {
    const url = await linkFor(visit, seat.participant);
    const data = await api("POST", "/console/qr", { url });
    const role = t("role_" + seat.role);
    $("qr-image").src = data.svg;
    $("qr-image").alt = t("qrAlt", { role });
    $("qr-for").textContent = t("qrFor", { role });
    $("qr-dialog").showModal();
  }

  async function joinAsHost(visit) {
    const mine = visit.seats.find((s) => s.role === state.role)
      || visit.seats.find((s) => HOST_ROLES.has(s.role) || (s.role === "nurse" && visit.kind === "assisted"));
    const url = await linkFor(visit, mine.participant);
    location.assign(url);
  }

  async function reschedule(visit, value) {
    if (!value) return;
    await api("PATCH", `/api/visits/${encodeURIComponent(visit.id)}`, {
      planned_start: new Date(value).toISOString(),
    });
    say(t("rescheduled"));
  }

  async function cancel(visit) {
    if (!window.confirm(t("cancelConfirm"))) return;
    await api("POST", `/api/visits/${encodeURIComponent(visit.id)}/cancel`);
    state.links.delete(visit.id);
    say(t("cancelled"));
  }

  // --- booking ------------------------------------------------------------------------------

  const DEFAULT_SEATS = {
    consultation: () => ["citizen", HOST_ROLES.has(state.role) ? state.role : "gp"],
    assisted: () => ["citizen", "nurse", state.role === "specialist" ? "specialist" : "gp"],
    conference: () => ["gp", "specialist", "citizen"],
  };

  function addParticipantRow(role) {
    const row = $("participant-row").content.firstElementChild.cloneNode(true);
    const index = $("book-participants").children.length;
    for (const el of row.querySelectorAll("[data-i18n]")) el.textContent = t(el.dataset.i18n);
    const select = row.querySelector("select");
    select.value = role;
    select.setAttribute("aria-label", `${t("role")} ${index + 1}`);
    row.querySelector("input").setAttribute("aria-label", `${t("name")} ${index + 1}`);
    row.querySelector(".remove").addEventListener("click", () => row.remove());
    $("book-participants").append(row);
  }

  function resetParticipants() {
    $("book-participants").textContent = "";
    for (const role of DEFAULT_SEATS[$("book-kind").value]()) addParticipantRow(role);
  }

  async function book(event) {
    event.preventDefault();
    const form = $("book-form");
    const participants = [...$("book-participants").children].map((row) => {
      const entry = { role: row.querySelector("select").value };
      const name = row.querySelector("input").value.trim();
      if (name) entry.name = name;
      return entry;
    });
    const data = await api("POST", "/api/visits", {
      kind: form.kind.value,
      participants,
      planned_start: new Date(form.start.value).toISOString(),
      planned_minutes: Number(form.minutes.value),
      waiting_room: form.waiting_room.checked,
    });
    state.links.set(data.visit, new Map(data.participants.map((p) => [p.participant, p.url])));
    resetParticipants(); // names do not linger in the form
    say(t("booked"));
  }

  function setUpBooking() {
    const start = new Date(Date.now() + 30 * 60 * 1000);
    start.setMinutes(Math.ceil(start.getMinutes() / 5) * 5, 0, 0);
    $("book-start").value = localInput(start);
    $("book-kind").addEventListener("change", resetParticipants);
    $("add-participant").addEventListener("click", () => addParticipantRow("relative"));
    $("book-form").addEventListener("submit", (event) => run(() => book(event)));
    resetParticipants();
  }

  // --- start --------------------------------------------------------------------------------

  for (const el of document.querySelectorAll("[data-set-lang]")) {
    el.addEventListener("click", () => {
      state.lang = el.dataset.setLang;
      localStorage.setItem("screenvisit-lang", state.lang);
      applyLanguage();
    });
  }
  applyLanguage();

  if (body.dataset.signedIn !== "yes") {
    const token = location.hash.slice(1);
    if (token) signInWithLink(token).catch(() => fail("network"));
    return;
  }
  $("logout").addEventListener("click", () =>
    run(async () => {
      await api("POST", "/console/logout");
      location.replace("/console");
    }),
  );
  if ($("book-form")) {
    setUpBooking();
    $("qr-close").addEventListener("click", () => $("qr-dialog").close());
    connect();
    setInterval(tick, 15000);
  }
})();

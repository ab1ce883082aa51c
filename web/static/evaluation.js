"use strict";
// The evaluators' report: aggregated, pseudonymous figures as simple SVG bar charts.
// The evaluator's token comes in the URL fragment, as with invite links, and never in a URL
// the server sees.
(() => {
  const token = location.hash.slice(1);
  const $ = (id) => document.getElementById(id);
  const SVG = "http://www.w3.org/2000/svg";
  window.screenvisitReport = { loaded: false, report: null };

  function query() {
    const data = new FormData($("filters"));
    const params = new URLSearchParams();
    for (const [name, value] of data.entries()) if (value) params.set(name, String(value));
    return params;
  }

  async function call(path) {
    const response = await fetch(path, { headers: { Authorization: `Bearer ${token}` } });
    if (!response.ok) {
      const body = await response.json().catch(() => ({}));
      throw new Error((body.error && body.error.message) || response.statusText);
    }
    return response;
  }

  function bars(container, entries) {
    const el = $(container);
    el.textContent = "";
    if (!entries.length) {
      el.textContent = "–";
      return;
    }
    const max = Math.max(1, ...entries.map(([, v]) => v));
    const rowHeight = 26;
    const svg = document.createElementNS(SVG, "svg");
    svg.setAttribute("viewBox", `0 0 480 ${entries.length * rowHeight}`);
    svg.setAttribute("role", "img");
    svg.setAttribute("aria-label", entries.map(([k, v]) => `${k}: ${v}`).join(", "));
    entries.forEach(([label, value], i) => {
      const y = i * rowHeight;
      const text = document.createElementNS(SVG, "text");
      text.setAttribute("x", "0");
      text.setAttribute("y", String(y + 17));
      text.textContent = label;
      const rect = document.createElementNS(SVG, "rect");
      rect.setAttribute("x", "230");
      rect.setAttribute("y", String(y + 4));
      rect.setAttribute("height", "18");
      rect.setAttribute("width", String(Math.max(1, (value / max) * 200)));
      rect.setAttribute("class", "bar");
      const count = document.createElementNS(SVG, "text");
      count.setAttribute("x", String(236 + (value / max) * 200));
      count.setAttribute("y", String(y + 17));
      count.textContent = number.format(value);
      svg.append(text, rect, count);
    });
    el.append(svg);
  }

  // Danish number format: decimal comma, a space before "%" and "min".
  const number = new Intl.NumberFormat("da-DK", { maximumFractionDigits: 1 });
  const missing = (value) => value === null || value === undefined;

  function percent(rate) {
    return missing(rate) ? "–" : `${number.format(rate * 100)} %`;
  }

  function minutes(seconds) {
    return missing(seconds) ? "–" : `${number.format(seconds / 60)} min`;
  }

  // Codes in the report, in words (the codes stay in the exports).
  const WORDS = {
    "handled-remotely": "Klaret over video",
    "physical-visit-needed": "Fysisk besøg nødvendigt",
    "referred-to-hospital": "Henvist til sygehus",
    "admission-avoided": "Indlæggelse undgået",
    "new-video-visit": "Nyt videobesøg",
    other: "Andet",
    "media-failed": "Forbindelsen svigtede",
    "no-first-frame": "Intet billede inden 20 s",
    "no-media": "Ingen lyd/billede i 3 målinger",
    "ended-after-failure": "Sluttede kort efter en fejl",
    "fell-back-to-phone": "Fortsat over telefon",
    citizen: "Borger",
    relative: "Pårørende",
    nurse: "Sygeplejerske",
    therapist: "Terapeut",
    gp: "Praktiserende læge",
    specialist: "Speciallæge",
    interpreter: "Tolk",
  };
  const word = (code) => WORDS[code] || code;

  function weekLabel(week) {
    const match = /^(\d{4})-W(\d{2})$/.exec(week);
    return match ? `Uge ${Number(match[2])}, ${match[1]}` : week;
  }

  async function load(event) {
    if (event) event.preventDefault();
    $("eval-error").hidden = true;
    try {
      const data = await (await call(`/api/evaluation/report?${query()}`)).json();
      const r = data.report;
      window.screenvisitReport.report = data;
      $("figures").textContent = "";
      const figures = [
        ["Besøg / Visits", number.format(data.visits)],
        ["Afholdt / Held", number.format(r.held)],
        ["Teknisk fejl / Technical failure", percent(r.technical_failure_rate)],
        ["Fortsat over telefon / Fell back to phone", percent(r.fallback_rate)],
        ["Assisteret / Assisted", number.format(r.assisted)],
        ["Median varighed / Median duration", minutes(r.durations.median)],
        ["Median ventetid / Median waiting", minutes(r.waiting.median)],
        [
          "Oplevelse, gns. (1-5) / Experience, mean",
          missing(r.experience.mean) ? "–" : number.format(r.experience.mean),
        ],
      ];
      for (const [label, value] of figures) {
        const item = document.createElement("div");
        item.className = "figure";
        const strong = document.createElement("strong");
        strong.textContent = String(value);
        item.append(strong, document.createTextNode(` ${label}`));
        $("figures").append(item);
      }
      bars("chart-weeks", Object.entries(r.visits_per_week).map(([w, n]) => [weekLabel(w), n]));
      bars("chart-outcomes", Object.entries(r.outcomes).map(([c, n]) => [word(c), n]));
      bars("chart-failures", Object.entries(r.failure_reasons).map(([c, n]) => [word(c), n]));
      bars("chart-durations", r.durations.buckets.map((b) => [b.label, b.count]));
      bars("chart-waiting", r.waiting.buckets.map((b) => [b.label, b.count]));
      const counts = { 1: 0, 2: 0, 3: 0, 4: 0, 5: 0 };
      for (const q of Object.values(r.experience.questions)) {
        for (const [answer, n] of Object.entries(q.counts)) counts[answer] += n;
      }
      bars("chart-experience", Object.entries(counts));
      window.screenvisitReport.loaded = true;
    } catch (err) {
      $("eval-error").textContent = String(err.message || err);
      $("eval-error").hidden = false;
    }
  }

  async function download(format) {
    try {
      const response = await call(`/api/evaluation/export?${query()}&format=${format}`);
      const blob = await response.blob();
      const match = /filename="([^"]+)"/.exec(response.headers.get("Content-Disposition") || "");
      const link = document.createElement("a");
      link.href = URL.createObjectURL(blob);
      link.download = match ? match[1] : `screenvisit-${format}`;
      link.click();
      URL.revokeObjectURL(link.href);
    } catch (err) {
      $("eval-error").textContent = String(err.message || err);
      $("eval-error").hidden = false;
    }
  }

  $("filters").addEventListener("submit", load);
  for (const button of document.querySelectorAll("[data-format]")) {
    button.addEventListener("click", () => download(button.dataset.format));
  }
  if (!token) {
    $("eval-error").textContent = "Åbn siden med dit evaluator-link / Open with your evaluator link";
    $("eval-error").hidden = false;
  } else {
    load();
  }
})();

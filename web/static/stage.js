"use strict";
// The call's stage: remote tiles in a grid sized to the space there is, one tile on the stage
// when pinned, the self-view as a small overlay in a corner, fullscreen and the visit timer.
//
// For other parts of the page (a shared screen, a second camera): append a `figure.tile` to
// #tiles, with `data-stage="true"` to put it on the stage, or call `screenvisitStage.pin(el)`.
// The stage tells of changes with a "stagechange" event on #tiles ({detail: {pinned}}).
window.screenvisitStage = (() => {
  const CORNERS = ["bottom-right", "bottom-left", "top-left", "top-right"];
  const ASPECT = 4 / 3;
  let tiles = null;
  let stage = null;
  let selfTile = null;
  let timer = null;

  function init() {
    tiles = document.getElementById("tiles");
    stage = document.getElementById("stage");
    selfTile = document.getElementById("self-tile");
    new ResizeObserver(relayout).observe(stage);
    new MutationObserver((changes) => {
      for (const change of changes) {
        const added = change.type === "childList" ? [...change.addedNodes] : [change.target];
        const staged = added.filter((el) => el.dataset && el.dataset.stage === "true");
        if (staged.length) return pin(staged[staged.length - 1]);
      }
      return relayout();
    }).observe(tiles, { childList: true, subtree: false, attributes: true, attributeFilter: ["data-stage"] });
    const saved = localStorage.getItem("screenvisit-self-corner");
    if (CORNERS.includes(saved)) selfTile.dataset.corner = saved;
    selfDrag();
    relayout();
  }

  /** The tile on the stage, or null. */
  function pinned() {
    return tiles ? tiles.querySelector(':scope > [data-stage="true"]') : null;
  }

  /** Put `tile` (a child of #tiles) on the stage; null or the pinned tile itself: unpin. */
  function pin(tile) {
    const before = pinned();
    for (const el of tiles.children) {
      const want = el === tile;
      if ((el.dataset.stage === "true") !== want) {
        if (want) el.dataset.stage = "true";
        else delete el.dataset.stage;
      }
    }
    relayout();
    if (before !== pinned()) {
      tiles.dispatchEvent(new CustomEvent("stagechange", { detail: { pinned: pinned() } }));
    }
  }

  function unpin() {
    pin(null);
  }

  function bestGrid(n, width, height) {
    // The column count that gives each tile the largest picture of the usual shape.
    let best = { cols: 1, rows: n, area: 0 };
    for (let cols = 1; cols <= n; cols += 1) {
      const rows = Math.ceil(n / cols);
      const w = width / cols;
      const h = height / rows;
      const area = Math.min(w, h * ASPECT) * Math.min(h, w / ASPECT);
      if (area > best.area) best = { cols, rows, area };
    }
    return best;
  }

  function relayout() {
    if (!tiles) return;
    const n = tiles.children.length;
    const box = stage.getBoundingClientRect();
    const wide = box.width >= box.height;
    const onStage = pinned();
    tiles.dataset.count = String(n);
    tiles.classList.toggle("staged", Boolean(onStage) && n > 1);
    tiles.classList.toggle("wide", wide);
    tiles.classList.toggle("tall", !wide);
    if (onStage && n > 1) {
      tiles.style.setProperty("--others", String(n - 1));
    } else {
      const grid = bestGrid(Math.max(n, 1), box.width, box.height);
      tiles.style.setProperty("--cols", String(grid.cols));
      tiles.style.setProperty("--rows", String(grid.rows));
    }
  }

  function moveSelf(corner) {
    selfTile.dataset.corner = corner;
    localStorage.setItem("screenvisit-self-corner", corner);
  }

  /** The next corner, clockwise: the move button's job (keyboard and touch alike). */
  function nextCorner() {
    const i = CORNERS.indexOf(selfTile.dataset.corner);
    moveSelf(CORNERS[(i + 1) % CORNERS.length]);
  }

  function selfDrag() {
    // Drag the self-view anywhere; on release it settles in the nearest corner.
    let start = null;
    selfTile.addEventListener("pointerdown", (event) => {
      if (event.target.closest("button")) return;
      start = { x: event.clientX, y: event.clientY };
      selfTile.setPointerCapture(event.pointerId);
    });
    selfTile.addEventListener("pointermove", (event) => {
      if (!start) return;
      selfTile.style.setProperty("--drag-x", `${event.clientX - start.x}px`);
      selfTile.style.setProperty("--drag-y", `${event.clientY - start.y}px`);
      selfTile.classList.add("dragging");
    });
    const drop = (event) => {
      if (!start) return;
      start = null;
      selfTile.classList.remove("dragging");
      selfTile.style.removeProperty("--drag-x");
      selfTile.style.removeProperty("--drag-y");
      const box = stage.getBoundingClientRect();
      const top = event.clientY < box.top + box.height / 2;
      const left = event.clientX < box.left + box.width / 2;
      moveSelf(`${top ? "top" : "bottom"}-${left ? "left" : "right"}`);
    };
    selfTile.addEventListener("pointerup", drop);
    selfTile.addEventListener("pointercancel", drop);
  }

  function showSelf(on) {
    selfTile.classList.toggle("self-hidden", !on);
  }

  function fullscreenAvailable() {
    return Boolean(document.fullscreenEnabled && document.documentElement.requestFullscreen);
  }

  function toggleFullscreen() {
    if (document.fullscreenElement) return document.exitFullscreen();
    return document.documentElement.requestFullscreen();
  }

  /** Count up from `since` (ms, epoch) in `el`, as m:ss, or h:mm:ss past an hour. */
  function startTimer(el, since) {
    clearInterval(timer);
    const tick = () => {
      const s = Math.max(0, Math.floor((Date.now() - since) / 1000));
      const h = Math.floor(s / 3600);
      const mm = String(Math.floor((s % 3600) / 60));
      const ss = String(s % 60).padStart(2, "0");
      el.textContent = h ? `${h}:${mm.padStart(2, "0")}:${ss}` : `${mm}:${ss}`;
    };
    tick();
    timer = setInterval(tick, 1000);
  }

  function stopTimer() {
    clearInterval(timer);
  }

  return {
    init, pin, unpin, pinned, relayout, nextCorner, showSelf, fullscreenAvailable,
    toggleFullscreen, startTimer, stopTimer,
  };
})();

"use strict";
// Watching the connection: an exponential backoff with a cap for the attempts to recover, and
// a watch on the inbound media that notices when it stops arriving while ICE says connected.
window.screenvisitConnWatch = (() => {
  /** Delays doubling from `first` to at most `max` ms; null once `cap` attempts were made. */
  function backoff({ first = 500, max = 8000, cap = 6 } = {}) {
    let attempts = 0;
    return {
      next() {
        if (attempts >= cap) return null;
        const delay = Math.min(first * 2 ** attempts, max);
        attempts += 1;
        return delay;
      },
      reset() {
        attempts = 0;
      },
      get attempts() {
        return attempts;
      },
    };
  }

  /**
   * Every `everyMs`, sum the bytes received on the inbound RTP streams whose mid is in
   * `expected()`; call `onStall()` once when that sum has not grown for `stallMs` while `pc`
   * is connected, and `onFlowing()` each time it grows.
   */
  function watchMedia(pc, expected, { onStall, onFlowing }, { stallMs = 4000, everyMs = 1000 } = {}) {
    let last = -1;
    let since = performance.now();
    let fired = false;
    let busy = false;
    const timer = setInterval(async () => {
      if (busy) return;
      const now = performance.now();
      const mids = expected();
      if (pc.connectionState !== "connected" || !mids.size) {
        since = now;
        last = -1;
        return;
      }
      busy = true;
      let bytes = 0;
      try {
        const stats = await pc.getStats();
        stats.forEach((s) => {
          if (s.type === "inbound-rtp" && mids.has(s.mid)) bytes += s.bytesReceived || 0;
        });
      } catch (err) {
        return;
      } finally {
        busy = false;
      }
      if (bytes !== last) {
        last = bytes;
        since = now;
        fired = false;
        if (onFlowing) onFlowing();
      } else if (!fired && now - since > stallMs) {
        fired = true;
        onStall();
      }
    }, everyMs);
    return { stop: () => clearInterval(timer) };
  }

  return { backoff, watchMedia };
})();

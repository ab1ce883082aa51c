"use strict";
// The two-note chime when someone starts waiting: the call page and the staff console play the
// same sound. A browser without Web Audio (or one that refuses it) just stays silent: the visible
// notice is what matters.
window.screenvisitChime = (() => {
  let context = null;
  return function chime() {
    try {
      const AudioContextClass = window.AudioContext || window.webkitAudioContext;
      if (!AudioContextClass) return;
      context = context || new AudioContextClass();
      for (const [i, freq] of [660, 880].entries()) {
        const osc = context.createOscillator();
        const gain = context.createGain();
        const at = context.currentTime + i * 0.18;
        osc.frequency.value = freq;
        gain.gain.setValueAtTime(0.15, at);
        gain.gain.exponentialRampToValueAtTime(0.001, at + 0.16);
        osc.connect(gain).connect(context.destination);
        osc.start(at);
        osc.stop(at + 0.17);
      }
    } catch (err) {
      // A missing sound must never stop the notice.
    }
  };
})();

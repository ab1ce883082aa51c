"use strict";
// One accessible confirmation dialog (a modal <dialog>): a question, what follows, a large
// button that does it and one that goes back. Focus starts on "back", the safe choice.
window.screenvisitConfirm = (() => {
  let pending = null;

  function ask({ title, text, yes }) {
    const dialog = document.getElementById("confirm-dialog");
    if (pending) pending(false);
    document.getElementById("confirm-title").textContent = title;
    document.getElementById("confirm-text").textContent = text;
    document.getElementById("confirm-yes").textContent = yes;
    dialog.returnValue = "";
    return new Promise((resolve) => {
      pending = resolve;
      const closed = () => {
        dialog.removeEventListener("close", closed);
        if (pending === resolve) pending = null;
        resolve(dialog.returnValue === "yes");
      };
      dialog.addEventListener("close", closed);
      if (!dialog.open) dialog.showModal();
      document.getElementById("confirm-no").focus();
    });
  }

  return { ask };
})();

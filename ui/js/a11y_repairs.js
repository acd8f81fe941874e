// Repair accessibility faults inside Gradio's own components that no tab can fix from Python, as they render
// (tabs, uploads and placeholders come and go, so a MutationObserver re-checks after each change, once a frame):
// - the File upload box is <button aria-label="Click to upload or drop files"> whose visible text says something
//   else ("Drop File Here - or - Click to Upload"; axe: label-content-name-mismatch): the label goes, so the
//   button's name is the text a person sees and can say to voice control;
// - empty Image/Gallery placeholders are <div class="empty" aria-label="Empty value"> with no role, where the
//   label is not allowed (axe: aria-prohibited-attr): they get role="img", an icon that says "Empty value".
(function repairGradioA11y() {
  "use strict";
  function repair() {
    document.querySelectorAll("button.upload-container[aria-label]").forEach((button) => {
      if (button.textContent.trim()) button.removeAttribute("aria-label");
    });
    document.querySelectorAll("div.empty[aria-label]:not([role])").forEach((div) => div.setAttribute("role", "img"));
  }
  let queued = false;
  function schedule() {
    if (queued) return;
    queued = true;
    requestAnimationFrame(() => {
      queued = false;
      repair();
    });
  }
  new MutationObserver(schedule).observe(document.documentElement, {
    subtree: true,
    childList: true,
    attributes: true,
    attributeFilter: ["aria-label", "role"],
  });
  schedule();
})();

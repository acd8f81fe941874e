// Repair accessibility faults inside Gradio's own components that no tab can fix from Python, as they render
// (tabs, uploads and placeholders come and go, so a MutationObserver re-checks after each change, once a frame):
// - the File upload box is <button aria-label="Click to upload or drop files"> whose visible text says something
//   else ("Drop File Here - or - Click to Upload"; axe: label-content-name-mismatch): the label goes, so the
//   button's name is the text a person sees and can say to voice control;
// - empty Image/Gallery placeholders are <div class="empty" aria-label="Empty value"> with no role, where the
//   label is not allowed (axe: aria-prohibited-attr): they get role="img", an icon that says "Empty value".
// - a File box that holds files draws its "add more" control as <button aria-label="common.upload"> (an
//   untranslated key) around the real upload <button> (axe: nested-interactive; a button inside a button): the
//   outer one becomes a named group out of the tab order, so the inner upload button is the one control that
//   keyboards and screen readers meet, and a click anywhere on the icon still reaches it.
(function repairGradioA11y() {
  "use strict";
  function repair() {
    document.querySelectorAll("button.upload-container[aria-label]").forEach((button) => {
      if (button.textContent.trim()) button.removeAttribute("aria-label");
    });
    document.querySelectorAll("div.empty[aria-label]:not([role])").forEach((div) => div.setAttribute("role", "img"));
    document.querySelectorAll("button.icon-button:not([role])").forEach((outer) => {
      if (!outer.querySelector("button, input:not([type=hidden]), [tabindex]:not([tabindex='-1'])")) return;
      outer.setAttribute("role", "group");
      outer.setAttribute("tabindex", "-1");
      if (outer.getAttribute("aria-label") === "common.upload") {
        outer.setAttribute("aria-label", "Add more files");
        outer.setAttribute("title", "Add more files");
      }
    });
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

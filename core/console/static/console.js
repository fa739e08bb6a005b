// The console's only script (no inline script: the Content-Security-Policy forbids it).
"use strict";
document.addEventListener("DOMContentLoaded", () => {
  // The filter box hides the rows whose text does not contain what was typed.
  for (const box of document.querySelectorAll("[data-filter]")) {
    box.addEventListener("input", () => {
      const wanted = box.value.trim().toLowerCase();
      for (const row of document.querySelectorAll(box.dataset.filter)) {
        row.hidden = wanted !== "" && !(row.dataset.text || "").toLowerCase().includes(wanted);
      }
    });
  }
  // The duration chosen goes with every role's forms.
  const duration = document.querySelector("[data-duration]");
  if (duration) {
    const apply = () => {
      for (const field of document.querySelectorAll("input[name=duration]")) {
        field.value = duration.value;
      }
    };
    duration.addEventListener("change", apply);
    apply();
  }
  // Copy buttons put a block's text on the clipboard.
  for (const button of document.querySelectorAll("[data-copy]")) {
    button.addEventListener("click", async () => {
      const text = document.querySelector(button.dataset.copy).textContent;
      await navigator.clipboard.writeText(text);
      button.textContent = "Copied";
    });
  }
  // The expiry counts down.
  for (const span of document.querySelectorAll("[data-countdown]")) {
    const until = Date.parse(span.dataset.countdown);
    const tick = () => {
      const left = Math.max(0, Math.floor((until - Date.now()) / 1000));
      const h = Math.floor(left / 3600), m = Math.floor((left % 3600) / 60), s = left % 60;
      span.textContent = left ? `${h}h ${String(m).padStart(2, "0")}m ${String(s).padStart(2, "0")}s left` : "expired";
    };
    tick();
    setInterval(tick, 1000);
  }
});

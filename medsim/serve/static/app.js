// medsim search: small progressive enhancements; every page works without this script.
"use strict";
document.addEventListener("DOMContentLoaded", () => {
  // a type filter applies as soon as a box is ticked
  for (const form of document.querySelectorAll("form.filter")) {
    for (const box of form.querySelectorAll("input[type=checkbox]")) {
      box.addEventListener("change", () => form.submit());
    }
  }
  // an image search needs a file: say so here rather than after a round trip
  const imageForm = document.querySelector("form.image-search");
  if (imageForm) {
    imageForm.addEventListener("submit", (event) => {
      const input = imageForm.querySelector("input[type=file]");
      if (!input.files.length) {
        event.preventDefault();
        input.setCustomValidity("choose an image first");
        input.reportValidity();
      }
    });
    imageForm.querySelector("input[type=file]").addEventListener("change", (event) => {
      event.target.setCustomValidity("");
    });
  }
});

// Airlock approvals inbox: the SHA-256 of exactly the text this page shows.
//
// For each pending call, hash the displayed canonical form (the element's
// textContent, UTF-8) with the browser's own WebCrypto, put the hex into the
// form's hidden `sha256` field and show it next to the button. The hash is
// taken again when the button is pressed, so it is always of what is on
// screen at that moment. The server approves only when it equals the hash of
// the pending call: a page that displays anything else cannot approve.
// No network access, no eval, no inline script (CSP `script-src 'self'`).
"use strict";

function airlockHex(buffer) {
  return Array.from(new Uint8Array(buffer), (b) => b.toString(16).padStart(2, "0")).join("");
}

async function airlockHashShown(box) {
  const shown = box.querySelector("pre.subject");
  const bytes = new TextEncoder().encode(shown.textContent);
  const hex = airlockHex(await crypto.subtle.digest("SHA-256", bytes));
  box.querySelector("input[name=sha256]").value = hex;
  const computed = box.querySelector(".computed");
  computed.textContent = hex;
  // A visual check only: the server compares the hash itself.
  const stored = box.querySelector(".sha256");
  computed.className = "mono computed " + (stored && stored.textContent === hex ? "ok" : "bad");
  return hex;
}

for (const box of document.querySelectorAll(".approval")) {
  const form = box.querySelector("form.approve");
  const button = box.querySelector("button.approve");
  if (!form || !button || !window.crypto || !crypto.subtle) {
    continue;
  }
  airlockHashShown(box).then(
    () => { button.disabled = false; },
    () => { box.querySelector(".computed").textContent = "could not compute"; },
  );
  form.addEventListener("submit", (ev) => {
    ev.preventDefault();
    button.disabled = true;
    airlockHashShown(box).then(
      () => form.submit(),
      () => { box.querySelector(".computed").textContent = "could not compute"; },
    );
  });
}

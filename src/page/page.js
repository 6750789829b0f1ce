// meshloop status page: follow GET /events and swap in the re-rendered page on each event.
// The page works without this script; it only keeps it current and sends the buttons' POSTs
// without leaving the page.
"use strict";
(() => {
  const body = document.body;
  const connection = document.getElementById("connection");
  const said = document.getElementById("said");
  let fetching = false;
  let again = false;
  body.dataset.events = "0";

  // One refresh at a time; events during one cause exactly one more.
  async function refresh() {
    if (fetching) { again = true; return; }
    fetching = true;
    try {
      const answer = await fetch("/", { headers: { accept: "text/html" }, cache: "no-store" });
      const doc = new DOMParser().parseFromString(await answer.text(), "text/html");
      const fresh = doc.getElementById("live");
      if (fresh) {
        document.getElementById("live").replaceWith(document.adoptNode(fresh));
        body.dataset.refreshed = String(Number(body.dataset.refreshed || 0) + 1);
      }
    } catch (e) {
      said.textContent = "could not refresh: " + e;
    } finally {
      fetching = false;
      if (again) { again = false; refresh(); }
    }
  }

  const stream = new EventSource("/events");
  for (const kind of ["sync", "findings", "verification", "drift"]) {
    stream.addEventListener(kind, (e) => {
      body.dataset.events = String(Number(body.dataset.events) + 1);
      body.dataset.lastEvent = kind + " " + e.lastEventId;
      refresh();
    });
  }
  // Connected (again): catch up with whatever happened while the page was not listening.
  stream.onopen = () => {
    connection.textContent = "live";
    connection.className = "live";
    refresh();
  };
  stream.onerror = () => {
    connection.textContent = "reconnecting…";
    connection.className = "";
  };

  document.addEventListener("submit", async (e) => {
    const form = e.target;
    e.preventDefault();
    const button = form.querySelector("button");
    button.disabled = true;
    said.textContent = button.textContent + "…";
    try {
      const answer = await fetch(form.action, { method: "POST" });
      const result = await answer.json().catch(() => ({}));
      said.textContent = button.textContent + ": " +
        (answer.ok ? "done" : "failed (" + answer.status + ")") +
        (typeof result.passed === "number"
          ? " · " + result.passed + " passed, " + result.failed + " failed" : "");
    } catch (err) {
      said.textContent = button.textContent + ": " + err;
    } finally {
      button.disabled = false;
    }
  });
})();

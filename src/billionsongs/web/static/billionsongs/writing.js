// Live writing: follow /song/<id>/stream/ (Server-Sent Events) and show the text as the model writes it.
// Each stream response is short (the server bounds it); EventSource reconnects by itself. When the server
// has no free stream slot (204), ask /song/<id>/progress/ for the same state every few seconds instead;
// only if that fails too, reload the page, as it does without JavaScript.
(function () {
  "use strict";
  var box = document.querySelector("[data-stream]");
  if (!box || !window.EventSource) { reload(); return; }
  var live = box.querySelector("[data-live]");
  var title = box.querySelector("[data-live-title]");
  var bar = box.querySelector("[data-bar]");
  var label = box.querySelector("[data-progress]");
  var source = new EventSource(box.getAttribute("data-stream"));
  var finished = false;

  function reload() {
    var seconds = box ? Number(box.getAttribute("data-refresh-seconds")) || 3 : 3;
    setTimeout(function () { window.location.replace(box ? box.getAttribute("data-refresh-url") : window.location.href); },
               seconds * 1000);
  }
  function show(state) {
    if (!state.tokens) {  // queued, or queued again after a worker died: no "0 tokens written"
      live.textContent = title.textContent = "";
      label.textContent = label.getAttribute("data-waiting");
      bar.hidden = true;
      return;
    }
    title.textContent = state.title || "";
    live.textContent = state.text;
    label.textContent = state.tokens + " tokens written so far" +
      (state.max_tokens ? " (at most " + state.max_tokens + ")." : ".");
    if (state.max_tokens) { bar.max = state.max_tokens; }
    bar.value = state.tokens;
    bar.hidden = false;
  }
  // A written song replaces this page. A failed one goes back to this page's own URL, as the reload
  // without JavaScript does: "no song" for a number asked for by name, another song where a random pick
  // brought the visitor (its URL carries ?fallback=random).
  function finish(event, url) {
    finished = true;
    window.location.replace(event === "failed" ? box.getAttribute("data-refresh-url") : url);
  }
  function poll() {
    if (!window.fetch) { reload(); return; }
    fetch(box.getAttribute("data-poll"), {headers: {"Accept": "application/json"}})
      .then(function (response) { if (!response.ok) { throw new Error(response.status); } return response.json(); })
      .then(function (state) {
        if (state.event === "progress") {
          show(state);
          setTimeout(poll, (Number(box.getAttribute("data-poll-seconds")) || 1) * 1000);
        } else {
          finish(state.event, state.url);
        }
      })
      .catch(reload);
  }
  source.addEventListener("progress", function (event) { show(JSON.parse(event.data)); });
  function ended(event) {
    source.close();
    finish(event.type, JSON.parse(event.data).url);
  }
  source.addEventListener("done", ended);
  source.addEventListener("failed", ended);
  source.onerror = function () {
    // CLOSED: the server refused (204, no free stream slot) or failed; CONNECTING: normal reconnect.
    if (!finished && source.readyState === EventSource.CLOSED) { poll(); }
  };
})();

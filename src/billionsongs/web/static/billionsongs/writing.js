// Live writing: follow /song/<id>/stream/ (Server-Sent Events) and show the text as the model writes it.
// Each stream response is short (the server bounds it); EventSource reconnects by itself. If streaming is
// refused or unavailable, fall back to reloading the page, as it does without JavaScript.
(function () {
  "use strict";
  var box = document.querySelector("[data-stream]");
  if (!box || !window.EventSource) { fallback(); return; }
  var live = box.querySelector("[data-live]");
  var title = box.querySelector("[data-live-title]");
  var bar = box.querySelector("[data-bar]");
  var label = box.querySelector("[data-progress]");
  var source = new EventSource(box.getAttribute("data-stream"));
  var finished = false;

  function fallback() {
    var seconds = box ? Number(box.getAttribute("data-refresh-seconds")) || 3 : 3;
    setTimeout(function () { window.location.replace(box ? box.getAttribute("data-refresh-url") : window.location.href); },
               seconds * 1000);
  }
  source.addEventListener("progress", function (event) {
    var state = JSON.parse(event.data);
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
  });
  // A written song replaces this page. A failed one goes back to this page's own URL, as the reload
  // without JavaScript does: "no song" for a number asked for by name, another song where a random pick
  // brought the visitor (its URL carries ?fallback=random).
  function finish(event) {
    finished = true;
    source.close();
    window.location.replace(event.type === "failed" ? box.getAttribute("data-refresh-url") : JSON.parse(event.data).url);
  }
  source.addEventListener("done", finish);
  source.addEventListener("failed", finish);
  source.onerror = function () {
    // CLOSED: the server refused (204, no free stream slot) or failed; CONNECTING: normal reconnect.
    if (!finished && source.readyState === EventSource.CLOSED) { fallback(); }
  };
})();

// How long a running job has been running. The server writes "0:12" into the progress panel (a
// reload shows it without JavaScript); this keeps it ticking between polls, whose answer stays a
// cached 304 while nothing else changes, and corrects it at once when htmx swaps a panel in
// (a 304 brings back the text of the panel as it was first drawn).
(function () {
  "use strict";
  // The server's clock minus this one's, as of this page's load: the start time is the server's.
  var serverTime = Number(document.body.dataset.serverTime);
  var skewMs = serverTime ? serverTime * 1000 - Date.now() : 0;

  function formatElapsed(seconds) {
    var hours = Math.floor(seconds / 3600);
    var minutes = Math.floor((seconds % 3600) / 60);
    var secs = seconds % 60;
    var mm = hours ? String(minutes).padStart(2, "0") : String(minutes);
    return (hours ? hours + ":" : "") + mm + ":" + String(secs).padStart(2, "0");
  }

  function tick() {
    var now = Date.now() + skewMs;
    document.querySelectorAll("[data-started-at]").forEach(function (element) {
      var started = Number(element.dataset.startedAt) * 1000;
      element.textContent = formatElapsed(Math.max(0, Math.floor((now - started) / 1000)));
    });
  }

  setInterval(tick, 1000);
  document.addEventListener("htmx:afterSwap", tick);
})();

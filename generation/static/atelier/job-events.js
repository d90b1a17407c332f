// Progress panels that react at once. A panel of an active job (a studio tab, a job's page) names
// its job's event stream (data-events-url: GET /api/v1/jobs/{id}/events, same origin, so the
// session cookie goes along). Each event (the start, an image, a preview, the end) asks for the
// panel's partial now, the same request its polling makes. The polling stays as the fallback:
// while the stream is open it asks only every SLOW_POLL_MS; while the stream is down (EventSource
// reconnects by itself, with Last-Event-ID) it polls at its own pace.
(function () {
  "use strict";
  if (!window.EventSource || !window.htmx) return;
  var SLOW_POLL_MS = 10000;
  var FINISHED = ["succeeded", "failed", "canceled"];
  var ENDS = ["job.succeeded", "job.failed", "job.canceled"];
  var streams = {}; // by URL: {source, lastAsk}
  var ended = {}; // streams of finished jobs: never opened again from this page

  function panelsOf(url) {
    return Array.prototype.filter.call(document.querySelectorAll(".progress-panel[data-events-url]"), function (panel) {
      return !url || panel.dataset.eventsUrl === url;
    });
  }

  // A panel whose request is on its way (its poll, or the ask of an earlier event) is asked
  // again when that request lands: htmx would queue the new ask on the panel the answer is
  // about to replace, and drop it there, so the panel would miss the event until its next poll.
  var askAgain = {}; // by URL

  function refresh(url) {
    panelsOf(url).forEach(function (panel) {
      var path = panel.getAttribute("hx-get");
      if (!path) return;
      if (panel.classList.contains(htmx.config.requestClass)) {
        askAgain[url] = true;
        return;
      }
      htmx.ajax("GET", path, { source: panel, target: panel, swap: "outerHTML", event: new CustomEvent("job-event") });
    });
  }

  document.addEventListener("htmx:afterRequest", function (event) {
    var panel = event.detail.elt;
    var url = panel instanceof HTMLElement && panel.dataset.eventsUrl;
    if (!url || !askAgain[url]) return;
    delete askAgain[url];
    refresh(url);
  });

  function close(url) {
    var stream = streams[url];
    if (stream) stream.source.close(); // else EventSource would reconnect after the server's end
    delete streams[url];
  }

  function finish(url) {
    ended[url] = true;
    close(url);
    refresh(url);
  }

  function open(url) {
    var source = new EventSource(url);
    streams[url] = { source: source, lastAsk: Date.now() };
    ["job.started", "job.output", "preview"].forEach(function (type) {
      source.addEventListener(type, function () {
        refresh(url);
      });
    });
    ENDS.forEach(function (type) {
      source.addEventListener(type, function () {
        finish(url);
      });
    });
    // The first message: a job that ended before the stream opened has nothing more to say.
    source.addEventListener("state", function (event) {
      var state = JSON.parse(event.data);
      if (FINISHED.indexOf(state.status) !== -1) finish(url);
    });
  }

  // Streams follow the panels: one per active job shown, closed when its panel goes.
  function sync() {
    var wanted = {};
    panelsOf(null).forEach(function (panel) {
      wanted[panel.dataset.eventsUrl] = true;
    });
    Object.keys(streams).forEach(function (url) {
      if (!wanted[url]) close(url);
    });
    Object.keys(wanted).forEach(function (url) {
      if (!streams[url] && !ended[url]) open(url);
    });
  }

  // The panel's own polling, slowed while its stream is open; the stream's asks always go.
  document.addEventListener("htmx:beforeRequest", function (event) {
    var panel = event.detail.elt;
    var stream = panel instanceof HTMLElement && panel.dataset.eventsUrl && streams[panel.dataset.eventsUrl];
    if (!stream) return;
    var trigger = event.detail.requestConfig && event.detail.requestConfig.triggeringEvent;
    var now = Date.now();
    if ((!trigger || trigger.type !== "job-event") && stream.source.readyState === EventSource.OPEN &&
        now - stream.lastAsk < SLOW_POLL_MS) {
      event.preventDefault();
      return;
    }
    stream.lastAsk = now;
  });

  document.addEventListener("htmx:afterSettle", sync);
  sync();
})();

// The pages' few behaviours. The Content-Security-Policy allows scripts from this site only and
// no eval, so nothing is written inline in the templates (no hx-on, no htmx event filters): it
// is all here.

// How long a running job has been running. The server writes "0:12" into the progress panel (a
// reload shows it without JavaScript); this keeps it ticking between polls, whose answer stays a
// 304 while nothing else changes, and corrects it at once when htmx swaps a new panel in.
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

// Progress polls: the server answers 304 while a panel has not changed (its ETag). Signed-in
// pages are sent with Cache-Control: no-store, so the browser keeps no copy to revalidate by
// itself: the poll asks with the ETag of the last panel it got, and a 304 leaves the panel as it is.
(function () {
  "use strict";
  if (!window.htmx) return;
  var etags = {};
  htmx.config.responseHandling.unshift({ code: "304", swap: false });
  document.addEventListener("htmx:configRequest", function (event) {
    var etag = event.detail.verb === "get" && etags[event.detail.path];
    if (etag) event.detail.headers["If-None-Match"] = etag;
  });
  document.addEventListener("htmx:afterRequest", function (event) {
    var xhr = event.detail.xhr;
    var etag = xhr && xhr.status === 200 && xhr.getResponseHeader("ETag");
    if (etag) etags[event.detail.requestConfig.path] = etag;
  });
})();

// The studio form asks for an estimate as its fields change ("estimate-input", "estimate-change"
// in its hx-trigger), except for the fields that redraw the form's settings (provider, kind,
// model: data-reshape), whose redrawn settings ask for their own. htmx could filter the events
// only by evaluating code from the page, which the policy forbids; so the filtering is here.
(function () {
  "use strict";
  ["input", "change"].forEach(function (type) {
    document.addEventListener(type, function (event) {
      var field = event.target;
      if (!(field instanceof HTMLElement) || !field.form || field.dataset.reshape) return;
      field.dispatchEvent(new CustomEvent("estimate-" + type, { bubbles: true }));
    });
  });
})();

// A draft over the team's size quota is refused with a 413 whose body is the estimate panel
// saying so, and a request over a rate limit with a 429 whose message is retargeted to it
// (generation/pages/limits.py); htmx swaps no error answer by itself, so these are let in.
(function () {
  "use strict";
  document.addEventListener("htmx:beforeSwap", function (event) {
    var target = event.detail.target;
    var status = event.detail.xhr.status;
    if ((status === 413 || status === 429) && target && target.id === "estimate") {
      event.detail.shouldSwap = true;
      event.detail.isError = false;
    }
  });
})();

// A form marked data-confirm="question" asks before it is sent (Cancel, Delete): a cancel or a
// deletion cannot be undone. Keyboard and screen readers get the browser's own dialog.
(function () {
  "use strict";
  document.addEventListener("submit", function (event) {
    var form = event.target;
    var question = form instanceof HTMLFormElement && form.dataset.confirm;
    if (question && !window.confirm(question)) {
      event.preventDefault();
      event.stopImmediatePropagation(); // htmx must not send it either
    }
  }, true);
})();

// The person's time zone, for the server to write times in (config/timezones.py reads it): a
// cookie, set on every page so that it follows the device (a laptop that travelled).
(function () {
  "use strict";
  var zone;
  try {
    zone = Intl.DateTimeFormat().resolvedOptions().timeZone;
  } catch (error) {
    return;
  }
  if (zone && document.cookie.indexOf("tz=" + encodeURIComponent(zone)) === -1) {
    document.cookie = "tz=" + encodeURIComponent(zone) + "; path=/; max-age=31536000; SameSite=Lax";
  }
})();

// The style select says what the chosen style adds to the prompt: the server draws one note per
// style (templates/studio/partials/field.html), and this shows the chosen one's.
(function () {
  "use strict";
  document.addEventListener("change", function (event) {
    var select = event.target;
    if (!(select instanceof HTMLSelectElement) || !select.dataset.notes) return;
    document.querySelectorAll('[data-note-for="' + select.dataset.notes + '"]').forEach(function (note) {
      note.hidden = note.dataset.note !== select.value;
    });
  });
})();

// A change of provider, kind or model draws the form's sections again (closed unless they hold
// a value); the sections the person had opened stay open.
(function () {
  "use strict";
  var opened = null;
  document.addEventListener("htmx:beforeSwap", function (event) {
    var target = event.detail.target;
    if (!target || target.id !== "form-settings") return;
    opened = Array.prototype.map.call(target.querySelectorAll("details[data-section][open]"), function (section) {
      return section.dataset.section;
    });
  });
  document.addEventListener("htmx:afterSettle", function () {
    if (!opened) return;
    opened.forEach(function (key) {
      var section = document.querySelector('#form-settings details[data-section="' + key + '"]');
      if (section) section.open = true;
    });
    opened = null;
  });
})();

// The live status changed (the activity poll, live.js, got a new answer rather than a 304): a
// part of the page that follows it (hx-trigger "live-changed from:body", such as the Jobs list
// while a row's job runs) draws itself again. The page's first answer is the state it was drawn in.
(function () {
  "use strict";
  var answered = false;
  document.addEventListener("htmx:afterRequest", function (event) {
    var source = event.detail.elt;
    if (!source || source.id !== "live-poll" || !event.detail.xhr || event.detail.xhr.status !== 200) return;
    if (answered) document.body.dispatchEvent(new CustomEvent("live-changed"));
    answered = true;
  });
})();

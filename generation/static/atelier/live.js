// The live status of every signed-in page: the header's balance and "Queue (N)", the banner, the
// studio tabs' busy dots and the queue panel (generation/pages/activity.py draws them). The page
// asks GET /activity/ (#live-poll) now and then; the answer is out-of-band fragments that htmx
// puts in place by id, or a 304 (app.js sends the ETag) that changes nothing. Nothing here is
// inline in the templates: the Content-Security-Policy allows this file's code only.
(function () {
  "use strict";
  var poller = document.getElementById("live-poll");
  if (!poller || !window.htmx) return;
  var timer = null;
  var arrived = false;

  // How long until the next ask: the server says (sooner while something of the team runs).
  function pollSeconds() {
    var state = document.getElementById("live-state");
    var seconds = state ? Number(state.dataset.pollSeconds) : 0;
    return seconds > 0 ? seconds : 5;
  }

  function schedule() {
    clearTimeout(timer);
    timer = setTimeout(function () {
      // A page in a background tab does not ask; it asks at once when it is shown again.
      if (!document.hidden) htmx.trigger(poller, "live-poll");
      schedule();
    }, pollSeconds() * 1000);
  }

  function pollNow() {
    htmx.trigger(poller, "live-poll");
    schedule();
  }

  // The page's first ask (hx-trigger "load") reports what finished while the person was away.
  document.addEventListener("htmx:configRequest", function (event) {
    if (event.detail.elt !== poller || arrived) return;
    arrived = true;
    event.detail.parameters.arrival = "1";
  });

  document.addEventListener("visibilitychange", function () {
    if (!document.hidden) pollNow();
  });

  // Something this page did may have changed the status: ask now rather than at the next tick.
  // A form marked data-live-refresh (Cancel in the queue panel) was sent; or a progress panel
  // of the studio or a job page changed state (a job ended: the balance moved).
  var panelStates = "";
  function progressStates() {
    return Array.prototype.map.call(document.querySelectorAll(".progress-panel[data-status]"), function (panel) {
      return panel.dataset.status;
    }).join(",");
  }
  panelStates = progressStates();
  document.addEventListener("htmx:afterRequest", function (event) {
    var source = event.detail.elt;
    if (source instanceof HTMLElement && source.hasAttribute("data-live-refresh")) pollNow();
  });
  document.addEventListener("htmx:afterSettle", function () {
    var states = progressStates();
    if (states !== panelStates) {
      panelStates = states;
      pollNow();
    }
  });

  schedule();
})();

// The queue panel as a drawer: the header's "Queue (N)" opens it over the page (its href, the
// /queue/ page, is where it goes without JavaScript). Close, Escape or a second click close it.
(function () {
  "use strict";
  var drawer = document.getElementById("queue-drawer");
  if (!drawer) return;
  var opener = null;

  function toggles() {
    return document.querySelectorAll("[data-queue-toggle]");
  }

  function setOpen(open, from) {
    drawer.hidden = !open;
    toggles().forEach(function (link) {
      link.setAttribute("aria-expanded", open ? "true" : "false");
    });
    if (open) {
      opener = from || null;
      var close = drawer.querySelector("[data-queue-close]");
      if (close) close.focus();
    } else if (opener) {
      opener.focus();
      opener = null;
    }
  }

  document.addEventListener("click", function (event) {
    var target = event.target instanceof Element ? event.target : null;
    if (!target) return;
    var toggle = target.closest("[data-queue-toggle]");
    if (toggle) {
      if (event.ctrlKey || event.metaKey || event.shiftKey || event.button !== 0) return; // a new tab: the page
      event.preventDefault();
      setOpen(drawer.hidden, toggle);
      return;
    }
    if (target.closest("[data-queue-close]")) setOpen(false);
  });

  document.addEventListener("keydown", function (event) {
    if (event.key !== "Escape" || drawer.hidden) return;
    // Escape in the lightbox (a modal <dialog>, gallery.js) is the lightbox's: it closes that
    // alone. Its own handler may have closed it already by the time the key reaches here.
    var target = event.target instanceof Element ? event.target : null;
    if (event.defaultPrevented || document.querySelector("dialog[open]") || (target && target.closest("dialog"))) return;
    setOpen(false);
  });
})();

// Each poll that sees a change replaces the queue list whole (out of band), controls and all.
// Focus inside it would fall back to the page's body, and a keyboard user could hardly reach a
// Cancel: so the focused control's id (named after its job, activity_queue_list.html) is noted
// before the swap and the control of that id is focused after it. When it is gone (its job left
// the queue or is stopping), the list itself takes focus, so Tab goes on from inside the panel.
(function () {
  "use strict";
  var refocus = null; // {id: the focused control's id, or ""} while a swap of the list is under way

  document.addEventListener("htmx:oobBeforeSwap", function (event) {
    var list = event.detail.target;
    if (!(list instanceof Element) || list.id !== "queue-list") return;
    var active = document.activeElement;
    refocus = active && active !== list && list.contains(active) ? { id: active.id || "" } : null;
  });

  document.addEventListener("htmx:oobAfterSwap", function () {
    if (!refocus) return;
    var list = document.getElementById("queue-list");
    var again = refocus.id ? document.getElementById(refocus.id) : null;
    if (!again || !list || !list.contains(again)) again = list;
    refocus = null;
    if (again && document.activeElement !== again) again.focus({ preventScroll: true });
  });
})();

// The "finished" notice has an OK button that puts it away (the jobs are already marked seen).
(function () {
  "use strict";
  document.addEventListener("click", function (event) {
    var target = event.target instanceof Element ? event.target : null;
    var button = target && target.closest("[data-live-dismiss]");
    if (!button) return;
    var notice = button.closest(".live-notice");
    if (notice) notice.remove();
  });
})();

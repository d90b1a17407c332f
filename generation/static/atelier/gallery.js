// The lightbox over the collection, the job page and the studio: a thumbnail's link
// (a[data-lightbox] inside a [data-gallery] container) opens its image (or clip) at full size in a
// modal <dialog>, with previous/next (buttons and arrow keys), close (button, Escape, a click
// outside), Download, the look's page, Remix and Delete. The link's data attributes say what to
// show (templates/collection/lightbox_data.html); Remix and Delete are copied from the look's
// <template> (templates/collection/lightbox_actions.html), so they are the server's own forms.
// Without JavaScript the link simply opens the look's page or the image.
//
// The studio's progress panel is replaced by htmx every second while a job runs: the dialog lives
// outside it, clicks are caught on the document, and the list of items is read again from the
// page on opening and on each step, so images that arrive meanwhile join it.
(function () {
  "use strict";

  var LINKS = "[data-gallery] a[data-lightbox]";
  var dialog = null;
  var parts = {};
  var items = []; // snapshots of the links' data, in page order
  var current = -1;
  var opener = null; // the link that opened the lightbox

  function el(tag, className, attributes) {
    var node = document.createElement(tag);
    if (className) node.className = className;
    Object.keys(attributes || {}).forEach(function (name) {
      node.setAttribute(name, attributes[name]);
    });
    return node;
  }

  function build() {
    dialog = el("dialog", "lightbox", { "data-testid": "lightbox", "aria-labelledby": "lightbox-title" });
    var frame = el("div", "lightbox-frame");
    var bar = el("div", "lightbox-bar");
    parts.title = el("p", "lightbox-title", { id: "lightbox-title", "data-testid": "lightbox-title" });
    parts.counter = el("span", "lightbox-counter", { "data-testid": "lightbox-counter", "aria-live": "polite" });
    parts.close = el("button", "lightbox-close secondary small", {
      type: "button", "aria-label": "Close", "data-testid": "lightbox-close",
    });
    parts.close.textContent = "✕";
    bar.append(parts.title, parts.counter, parts.close);

    var stage = el("div", "lightbox-stage");
    parts.prev = el("button", "lightbox-nav prev", {
      type: "button", "aria-label": "Previous", "data-testid": "lightbox-prev",
    });
    parts.prev.textContent = "‹";
    parts.next = el("button", "lightbox-nav next", { type: "button", "aria-label": "Next", "data-testid": "lightbox-next" });
    parts.next.textContent = "›";
    parts.figure = el("figure", "lightbox-figure");
    parts.image = el("img", "", { "data-testid": "lightbox-image", alt: "" });
    parts.clip = el("video", "", { controls: "", playsinline: "", preload: "metadata", "data-testid": "lightbox-clip" });
    parts.figure.append(parts.image, parts.clip);
    stage.append(parts.prev, parts.figure, parts.next);

    var actions = el("div", "lightbox-actions actions");
    parts.download = el("a", "button secondary", { download: "", "data-testid": "lightbox-download" });
    parts.download.textContent = "Download";
    parts.open = el("a", "button secondary", { "data-testid": "lightbox-open" });
    parts.open.textContent = "Open the look's page";
    parts.lookActions = el("div", "lightbox-look-actions", { "data-testid": "lightbox-look-actions" });
    parts.deleteSlot = el("div", "lightbox-delete-slot");
    actions.append(parts.lookActions, parts.download, parts.open, parts.deleteSlot);

    frame.append(bar, stage, actions);
    dialog.append(frame);
    document.body.append(dialog);

    parts.close.addEventListener("click", close);
    parts.prev.addEventListener("click", function () { step(-1); });
    parts.next.addEventListener("click", function () { step(1); });
    // A click on the backdrop lands on the dialog itself (its frame fills it): that is "outside".
    dialog.addEventListener("click", function (event) {
      if (event.target === dialog) close();
    });
    dialog.addEventListener("keydown", onKey);
    dialog.addEventListener("close", afterClose);
  }

  function snapshot(link) {
    var data = link.dataset;
    return {
      full: data.full || link.href,
      download: data.download || data.full || link.href,
      kind: data.kind || "image",
      width: data.width,
      height: data.height,
      label: data.label || "",
      title: data.title || "",
      poster: data.poster || "",
      look: data.look || "",
      actions: data.actions || "",
    };
  }

  // The links of the gallery that holds `full` now (the page may have been swapped since).
  function galleryLinks(full) {
    var all = Array.prototype.slice.call(document.querySelectorAll(LINKS));
    var match = all.filter(function (link) { return snapshot(link).full === full; })[0];
    if (!match) return null;
    return Array.prototype.slice.call(match.closest("[data-gallery]").querySelectorAll("a[data-lightbox]"));
  }

  // What the lightbox steps through: each image once, though a page may show it twice (the Jobs
  // page shows a job's images on its row and again under the attempt that made them).
  function itemsOf(links) {
    var seen = {};
    return links.map(snapshot).filter(function (item) {
      if (seen[item.full]) return false;
      seen[item.full] = true;
      return true;
    });
  }

  function refresh() {
    var shown = items[current];
    var links = shown && galleryLinks(shown.full);
    if (!links) return; // the gallery went away: keep what we had
    items = itemsOf(links);
    current = Math.max(0, items.findIndex(function (item) { return item.full === shown.full; }));
  }

  function lookActions(item) {
    parts.lookActions.replaceChildren();
    parts.deleteSlot.replaceChildren();
    var source = item.actions && document.getElementById(item.actions);
    if (!source) return; // no look any more (deleted): nothing to remix or delete
    var copy = source.content.cloneNode(true);
    // After a delete the person comes back to this very page (the view checks it is ours).
    copy.querySelectorAll("input[name=next]").forEach(function (input) {
      input.value = window.location.pathname + window.location.search;
    });
    // Delete (the form that asks first) goes last, apart from the rest.
    copy.querySelectorAll("form[data-confirm]").forEach(function (form) {
      parts.deleteSlot.append(form);
    });
    parts.lookActions.append(copy);
  }

  function show(index) {
    current = (index + items.length) % items.length;
    var item = items[current];
    var isClip = item.kind === "clip";
    parts.title.textContent = item.title ? item.title + " · " + item.label : item.label;
    parts.counter.textContent = items.length > 1 ? current + 1 + " of " + items.length : "";
    parts.prev.hidden = parts.next.hidden = items.length < 2;

    parts.clip.pause();
    parts.image.hidden = isClip;
    parts.clip.hidden = !isClip;
    if (isClip) {
      parts.image.removeAttribute("src");
      if (item.poster) parts.clip.poster = item.poster; else parts.clip.removeAttribute("poster");
      parts.clip.src = item.full;
      setSize(parts.clip, item);
    } else {
      parts.clip.removeAttribute("src");
      parts.clip.load(); // stops fetching the clip that was shown
      setSize(parts.image, item);
      parts.image.alt = item.title || item.label;
      parts.image.src = item.full;
    }
    parts.download.href = item.download;
    parts.open.hidden = !item.look;
    if (item.look) parts.open.href = item.look;
    lookActions(item);
    preload(items[(current + 1) % items.length]);
  }

  // The width and height give the box the image's ratio before the file arrives (gallery.css
  // scales it to the screen with height:auto, so it is never stretched).
  function setSize(media, item) {
    if (item.width && item.height) {
      media.setAttribute("width", item.width);
      media.setAttribute("height", item.height);
    } else {
      media.removeAttribute("width");
      media.removeAttribute("height");
    }
  }

  function preload(item) {
    if (item && item.kind !== "clip") new Image().src = item.full;
  }

  function step(direction) {
    refresh();
    if (items.length > 1) show(current + direction);
  }

  function open(link) {
    if (!dialog) build();
    opener = link;
    items = itemsOf(Array.prototype.slice.call(link.closest("[data-gallery]").querySelectorAll("a[data-lightbox]")));
    show(items.findIndex(function (item) { return item.full === snapshot(link).full; }));
    dialog.showModal();
    parts.close.focus();
  }

  function close() {
    if (dialog && dialog.open) dialog.close();
  }

  // Focus goes back to the thumbnail of what was shown last (found again if htmx replaced it),
  // else to the link that opened the lightbox.
  function afterClose() {
    parts.clip.pause();
    var shown = items[current];
    var links = shown && galleryLinks(shown.full);
    var target = links && links.filter(function (link) { return snapshot(link).full === shown.full; })[0];
    if (!target && opener && opener.isConnected) target = opener;
    if (target) target.focus();
    opener = null;
  }

  function focusables() {
    return Array.prototype.slice.call(
      dialog.querySelectorAll("button, a[href], input:not([type=hidden]), select, textarea, video[controls]")
    ).filter(function (node) { return !node.hidden && !node.closest("[hidden]") && !node.disabled; });
  }

  function onKey(event) {
    var target = event.target;
    var typing = target.matches && target.matches("input, select, textarea, video");
    if (event.key === "ArrowLeft" && !typing) {
      event.preventDefault();
      step(-1);
    } else if (event.key === "ArrowRight" && !typing) {
      event.preventDefault();
      step(1);
    } else if (event.key === "Escape") {
      event.preventDefault();
      close();
    } else if (event.key === "Tab") {
      // The modal dialog keeps the page behind it inert; this keeps Tab going round inside it
      // rather than out to the browser's own bars.
      var nodes = focusables();
      if (!nodes.length) return;
      var first = nodes[0];
      var last = nodes[nodes.length - 1];
      if (event.shiftKey && document.activeElement === first) {
        event.preventDefault();
        last.focus();
      } else if (!event.shiftKey && document.activeElement === last) {
        event.preventDefault();
        first.focus();
      }
    }
  }

  document.addEventListener("click", function (event) {
    if (event.defaultPrevented || event.button !== 0 || event.metaKey || event.ctrlKey || event.shiftKey || event.altKey) {
      return; // a new tab or window, as the person asked
    }
    var link = event.target instanceof Element && event.target.closest(LINKS);
    if (!link) return;
    event.preventDefault();
    open(link);
  });
})();

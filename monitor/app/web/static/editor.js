// Live preview of the watchlist editor: after each pause in typing, the form is posted
// to /watchlists/preview and the returned fragment replaces the preview pane. Answers
// that arrive out of order are dropped (only the latest request may paint).
(function () {
  "use strict";
  var form = document.getElementById("editor");
  var pane = document.getElementById("preview");
  if (!form || !pane) { return; }
  var csrf = document.querySelector('meta[name="csrf-token"]').content;
  var timer = null;
  var latest = 0;

  function refresh() {
    var mine = ++latest;
    pane.setAttribute("aria-busy", "true");
    fetch("/watchlists/preview", {
      method: "POST",
      body: new FormData(form),
      headers: { "X-CSRF-Token": csrf },
      credentials: "same-origin"
    }).then(function (r) { return r.text(); }).then(function (html) {
      if (mine !== latest) { return; }
      pane.innerHTML = html;
      pane.removeAttribute("aria-busy");
      pane.dataset.version = String(mine);
    }).catch(function (err) {
      if (mine === latest) { pane.textContent = "Preview unavailable: " + err; }
    });
  }

  function soon() {
    if (timer) { clearTimeout(timer); }
    timer = setTimeout(refresh, 250);
  }

  form.addEventListener("input", soon);
  form.addEventListener("change", soon);
  var days = document.getElementById("days");
  if (days) { days.addEventListener("input", soon); }
  if (document.getElementById("query").value.trim()) { refresh(); }
})();

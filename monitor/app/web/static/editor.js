// Live preview of the watchlist editor: after each pause in typing, the form is posted
// to /watchlists/preview and the returned fragment replaces the preview pane. Answers
// that arrive out of order are dropped (only the latest request may paint). The alias
// groups the query names are marked in the list beside the form as it is typed.
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

  // The alias groups the query names (and those they name in turn) are marked "used".
  var aliasNames = /@([A-Za-z0-9_][A-Za-z0-9_.\-]*)/g;
  function markAliases() {
    var terms = document.querySelectorAll("#aliases dt[data-alias]");
    var byName = {};
    terms.forEach(function (dt) { byName[dt.dataset.alias] = dt; dt.classList.remove("used"); });
    var todo = [], seen = {}, m;
    var query = document.getElementById("query").value;
    while ((m = aliasNames.exec(query)) !== null) { todo.push(m[1]); }
    while (todo.length) {
      var name = todo.pop();
      if (seen[name] || !byName[name]) { continue; }
      seen[name] = true;
      byName[name].classList.add("used");
      var inner = byName[name].nextElementSibling.textContent;
      while ((m = aliasNames.exec(inner)) !== null) { todo.push(m[1]); }
    }
  }

  form.addEventListener("input", soon);
  form.addEventListener("input", markAliases);
  form.addEventListener("change", soon);
  markAliases();
  var days = document.getElementById("days");
  if (days) { days.addEventListener("input", soon); }
  if (document.getElementById("query").value.trim()) { refresh(); }
})();

// Live updates of a run's timeline: the records that follow the last one
// the page shows, from the dashboard's own socket (authenticated by the
// session cookie, same origin only, read-only). Every cell is set with
// textContent, so nothing a record holds is ever parsed as HTML.
(function () {
  "use strict";
  var status = document.getElementById("live-status");
  var table = document.querySelector("table.timeline");
  if (!status || !table || !status.dataset.live) {
    return;
  }
  var scheme = location.protocol === "https:" ? "wss://" : "ws://";
  var ws = new WebSocket(scheme + location.host + status.dataset.live);
  ws.onopen = function () {
    status.textContent = "Live: new records appear below as they are written.";
  };
  ws.onmessage = function (m) {
    var rec;
    try {
      rec = JSON.parse(m.data);
    } catch (e) {
      return;
    }
    if (!rec || !Array.isArray(rec.cells)) {
      return;
    }
    var tr = document.createElement("tr");
    tr.className = "live";
    tr.dataset.index = String(rec.index);
    rec.cells.forEach(function (c) {
      var td = document.createElement("td");
      td.textContent = String(c.text);
      if (c.class) {
        td.className = String(c.class);
      }
      tr.appendChild(td);
    });
    table.tBodies[0].appendChild(tr);
    status.dataset.count = String(table.tBodies[0].rows.length);
  };
  ws.onclose = function () {
    status.textContent = "Not live (the session ended or the server went away): reload the page.";
  };
})();

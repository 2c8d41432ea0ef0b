// Switchboard console: live fragments over server-sent events, and ticking clocks.
// No framework, no build step. Fragments are HTML rendered (and escaped) by the server.
(function () {
  "use strict";

  var status = document.getElementById("live-status");
  function setStatus(text, state) {
    if (!status) { return; }
    status.textContent = text;
    status.dataset.state = state;
  }

  function fmt(seconds) {
    var s = Math.floor(Math.abs(seconds));
    var sign = seconds < 0 && s > 0 ? "-" : "";
    if (s < 60) { return sign + s + "s"; }
    if (s < 3600) { return sign + Math.floor(s / 60) + "m " + String(s % 60).padStart(2, "0") + "s"; }
    if (s < 86400) { return sign + Math.floor(s / 3600) + "h " + String(Math.floor(s % 3600 / 60)).padStart(2, "0") + "m"; }
    return sign + Math.floor(s / 86400) + "d " + Math.floor(s % 86400 / 3600) + "h";
  }

  // Times rendered by the server count on from when they arrived: no clock skew involved.
  function stamp(root) {
    var now = Date.now();
    root.querySelectorAll("time[data-left], time[data-ago]").forEach(function (el) {
      el.dataset.base = String(now);
    });
  }
  function tick() {
    var now = Date.now();
    document.querySelectorAll("time[data-left]").forEach(function (el) {
      var passed = (now - Number(el.dataset.base || now)) / 1000;
      el.textContent = fmt(Number(el.dataset.left) - passed);
    });
    document.querySelectorAll("time[data-ago]").forEach(function (el) {
      var passed = (now - Number(el.dataset.base || now)) / 1000;
      el.textContent = fmt(Number(el.dataset.ago) + passed);
    });
  }

  // An escalation acknowledged or resolved meanwhile: no Acknowledge button any more.
  function syncActions() {
    var status = document.querySelector("#status[data-state]");
    var form = document.getElementById("acknowledge-form");
    if (status && form) {
      form.hidden = ["open", "exhausted"].indexOf(status.dataset.state) < 0;
    }
  }

  document.querySelectorAll("[data-live]").forEach(function (el) {
    var source = new EventSource(el.dataset.live);
    source.addEventListener("fragment", function (event) {
      el.innerHTML = event.data;
      stamp(el);
      syncActions();
      el.dataset.updates = String(Number(el.dataset.updates || 0) + 1);
      setStatus("live", "ok");
    });
    source.addEventListener("trouble", function (event) {
      setStatus(event.data, "trouble");
    });
    source.addEventListener("open", function () { setStatus("live", "ok"); });
    source.addEventListener("error", function () { setStatus("reconnecting…", "down"); });
  });

  stamp(document);
  setInterval(tick, 1000);
})();

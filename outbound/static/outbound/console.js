// The console's few behaviours, in a file of its own so the pages carry no
// inline script and the Content-Security-Policy can forbid it.
(function () {
  "use strict";

  // A form with data-confirm asks before it is sent (Send now on a scheduled message).
  document.addEventListener("submit", function (event) {
    var form = event.target;
    var question = form && form.getAttribute && form.getAttribute("data-confirm");
    if (question && !window.confirm(question)) { event.preventDefault(); }
  }, true);

  // <body data-refresh="30">: reload every 30 s to show new statuses (the URL
  // keeps the filters), except while the operator is typing in a filter.
  var seconds = parseInt(document.body.getAttribute("data-refresh") || "", 10);
  if (seconds > 0) {
    window.setInterval(function () {
      var el = document.activeElement;
      if (!el || !/^(INPUT|SELECT|TEXTAREA)$/.test(el.tagName)) { window.location.reload(); }
    }, seconds * 1000);
  }

  // The diagnostic report's Copy to clipboard.
  var copy = document.getElementById("copy-report");
  if (copy) {
    copy.addEventListener("click", function () {
      var area = document.getElementById("report");
      var status = document.getElementById("copy-status");
      function done() { status.textContent = "Copied."; }
      function fallback() { area.select(); document.execCommand("copy"); done(); }
      if (navigator.clipboard && window.isSecureContext) {
        navigator.clipboard.writeText(area.value).then(done, fallback);
      } else {
        fallback();
      }
    });
  }
})();

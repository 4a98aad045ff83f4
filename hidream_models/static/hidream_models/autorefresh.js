// Reload the task list while tasks are running, unless the user is busy selecting rows.
(function () {
  "use strict";
  var script = document.currentScript;
  var seconds = parseInt(script && script.dataset.seconds, 10) || 5;
  setInterval(function () {
    var busy = document.querySelector("#changelist input.action-select:checked, #changelist-search input:focus");
    if (!busy && document.visibilityState === "visible") {
      window.location.reload();
    }
  }, seconds * 1000);
})();

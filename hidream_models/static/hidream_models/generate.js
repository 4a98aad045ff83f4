// The generate page: show the fields of the chosen mode, count prompt characters as you
// type, and keep the "N products × K images = M pictures" summary current. Works without
// it too: the server validates everything.
(function () {
  "use strict";
  function init() {
    var form = document.querySelector("form.hidream-form");
    if (!form) { return; }
    var products = parseInt(form.dataset.products, 10) || 0;

    function mode() {
      var checked = form.querySelector("input[name=mode]:checked");
      return checked ? checked.value : "template";
    }
    function showMode() {
      form.querySelectorAll("[data-mode]").forEach(function (el) {
        el.classList.toggle("hidream-hidden", el.dataset.mode !== mode());
      });
    }
    form.querySelectorAll("input[name=mode]").forEach(function (el) {
      el.addEventListener("change", showMode);
    });
    showMode();

    var prompt = form.querySelector("textarea[name=prompt]");
    var counter = form.querySelector(".hidream-counter");
    if (prompt && counter) {
      var max = parseInt(counter.dataset.max, 10);
      var update = function () { counter.textContent = prompt.value.length + " / " + max; };
      prompt.addEventListener("input", update);
      update();
    }

    var count = form.querySelector("input[name=image_count]");
    var k = form.querySelector(".hidream-k");
    var m = form.querySelector(".hidream-m");
    if (count && k && m) {
      var summarise = function () {
        var n = parseInt(count.value, 10);
        if (isNaN(n)) { return; }
        k.textContent = n;
        m.textContent = n * products;
      };
      count.addEventListener("input", summarise);
      summarise();
    }
  }
  if (document.readyState === "loading") {
    document.addEventListener("DOMContentLoaded", init);
  } else {
    init();
  }
})();

// The generate page: show the fields of the chosen mode (or none when a preset decides),
// filter the template cards, count prompt characters as you type, and keep the
// "N products × K images = M pictures (≈ C credits)" summary current. The page works without
// it too: the server validates everything.
(function () {
  "use strict";
  function init() {
    var form = document.querySelector("form.hidream-form");
    if (!form) { return; }
    var products = parseInt(form.dataset.products, 10) || 0;
    var preset = form.querySelector("select[name=preset]");
    var count = form.querySelector("input[name=image_count]");

    function mode() {
      var checked = form.querySelector("input[name=mode]:checked");
      return checked ? checked.value : "template";
    }
    function presetCount() {
      if (!preset || !preset.value) { return null; }
      return parseInt(preset.options[preset.selectedIndex].dataset.imageCount, 10);
    }
    function refresh() {
      var usingPreset = presetCount() !== null;
      form.querySelectorAll(".hidream-manual").forEach(function (el) {
        el.classList.toggle("hidream-hidden", usingPreset);
      });
      form.querySelectorAll("[data-mode]").forEach(function (el) {
        el.classList.toggle("hidream-hidden", el.dataset.mode !== mode());
      });
      summarise();
    }
    function summarise() {
      var k = presetCount();
      if (k === null && count) { k = parseInt(count.value, 10); }
      if (isNaN(k) || k === null) { return; }
      var set = function (sel, value) {
        var el = form.querySelector(sel);
        if (el) { el.textContent = value; }
      };
      set(".hidream-k", k);
      set(".hidream-m", k * products);
      var credits = form.querySelector(".hidream-credits");
      if (credits) {
        var total = k * products * parseFloat(credits.dataset.perImage);
        set(".hidream-c", Math.round(total * 100) / 100);
      }
    }
    form.querySelectorAll("input[name=mode]").forEach(function (el) {
      el.addEventListener("change", refresh);
    });
    if (preset) { preset.addEventListener("change", refresh); }
    if (count) { count.addEventListener("input", summarise); }

    form.querySelectorAll(".hidream-filters select").forEach(function (select) {
      select.addEventListener("change", function () {
        var attr = "data-" + select.dataset.filter;
        form.querySelectorAll(".hidream-pick[" + attr + "]").forEach(function (card) {
          var value = card.getAttribute(attr);
          if (!value) { return; }  // cards of the other kind are not filtered by this
          card.classList.toggle("hidream-hidden", select.value !== "" && value !== select.value);
        });
      });
    });

    var prompt = form.querySelector("textarea[name=prompt]");
    var counter = form.querySelector(".hidream-counter");
    if (prompt && counter) {
      var max = parseInt(counter.dataset.max, 10);
      var update = function () { counter.textContent = prompt.value.length + " / " + max; };
      prompt.addEventListener("input", update);
      update();
    }
    refresh();
  }
  if (document.readyState === "loading") {
    document.addEventListener("DOMContentLoaded", init);
  } else {
    init();
  }
})();

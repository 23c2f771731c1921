/* The dashboard's only script: follow a refund's status without reloading, and disable a
   confirmation button once clicked (the server refuses a second submit anyway). */
(function () {
  "use strict";
  document.querySelectorAll("form button[data-once]").forEach(function (button) {
    button.form.addEventListener("submit", function () {
      setTimeout(function () { button.disabled = true; }, 0);
    });
  });

  var live = document.getElementById("refund-live");
  if (!live || live.dataset.terminal === "1") { markSteps(live && live.querySelector("[data-testid=refund-status]").textContent); return; }
  var url = live.dataset.poll, delay = 1000;

  function markSteps(label) {
    if (!live) { return; }
    var status = (label || "").trim().replace(/ /g, "_"), seen = false;
    var steps = Array.prototype.slice.call(live.querySelectorAll("ol.steps li"));
    var index = steps.findIndex(function (li) { return li.dataset.step === status; });
    steps.forEach(function (li, i) {
      li.classList.toggle("done", index >= 0 && i < index);
      li.classList.toggle("now", i === index);
      seen = seen || i === index;
    });
  }

  function poll() {
    fetch(url, { credentials: "same-origin", headers: { "Accept": "application/json" } })
      .then(function (r) { return r.ok ? r.json() : Promise.reject(r.status); })
      .then(function (state) {
        var badge = live.querySelector("[data-testid=refund-status]");
        badge.textContent = state.status.replace(/_/g, " ");
        badge.className = "status s-" + state.status;
        live.querySelector("[data-testid=refund-stripe-id]").textContent = state.stripe_refund_id || "";
        var failure = live.querySelector("[data-testid=refund-failure]");
        failure.textContent = state.failure_reason || "";
        failure.hidden = !state.failure_reason;
        markSteps(state.status);
        if (state.terminal) { live.querySelector(".live-note").textContent = ""; return; }
        delay = state.status === "awaiting_approval" ? 5000 : 1000;
        setTimeout(poll, delay);
      })
      .catch(function () { setTimeout(poll, 5000); });
  }
  markSteps(live.querySelector("[data-testid=refund-status]").textContent);
  setTimeout(poll, delay);
})();

/* The portal's own script, loaded from our origin (the Content-Security-Policy allows no inline script or eval).

   Polls (hx-trigger="every Ns") pause while the tab is hidden: nobody reads a background tab, and a wall of open
   tabs would otherwise keep the server busy. htmx's [document.visibilityState === 'visible'] filter would say the
   same, but filters are evaluated code, which the policy forbids; this does it without eval. */
(function () {
  "use strict";
  var EVERY = /^\s*every\s/;
  document.addEventListener("htmx:confirm", function (event) {
    var trigger = event.detail.elt && event.detail.elt.getAttribute("hx-trigger");
    if (document.visibilityState !== "visible" && trigger && EVERY.test(trigger)) {
      event.preventDefault();
    }
  });
})();

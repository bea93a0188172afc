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

/* The menu on a phone: the stylesheet folds the navigation behind the Menu button on narrow screens once this has
   run (the "menu-ready" class); without the script the navigation stays visible, wrapped onto several lines. */
(function () {
  "use strict";
  var header = document.querySelector(".site-header");
  var button = header && header.querySelector(".menu-button");
  if (!button) {
    return;
  }
  header.classList.add("menu-ready");
  button.hidden = false;
  button.addEventListener("click", function () {
    var open = header.classList.toggle("menu-open");
    button.setAttribute("aria-expanded", open ? "true" : "false");
  });
  document.addEventListener("keydown", function (event) {
    if (event.key === "Escape" && header.classList.contains("menu-open")) {
      header.classList.remove("menu-open");
      button.setAttribute("aria-expanded", "false");
      button.focus();
    }
  });
})();

/* A table too wide for the screen scrolls inside its .table-wrap; keyboard users reach that scroll by focusing the
   wrapper, so it takes focus while (and only while) it actually scrolls. Again after each htmx swap and resize. */
(function () {
  "use strict";
  var pending = false;
  function mark() {
    pending = false;
    document.querySelectorAll(".table-wrap").forEach(function (wrap) {
      if (wrap.scrollWidth > wrap.clientWidth) {
        wrap.tabIndex = 0;
      } else {
        wrap.removeAttribute("tabindex");
      }
    });
  }
  function later() {
    if (!pending) {
      pending = true;
      window.requestAnimationFrame(mark);
    }
  }
  mark();
  window.addEventListener("resize", later);
  document.addEventListener("htmx:afterSettle", later);
})();

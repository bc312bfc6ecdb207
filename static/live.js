// Parts of a page that keep themselves current: an element with data-refresh="URL" is
// re-fetched every data-every seconds (3 by default) while the tab is visible, and its
// contents are swapped in place when they changed. A fetched part holding an element
// with data-final (a call that has ended) stops the polling and tells the page, which
// reloads to show the full record.
(function () {
  "use strict";
  document.querySelectorAll("[data-refresh]").forEach(function (region) {
    const every = (Number(region.dataset.every) || 3) * 1000;
    let last = null;
    async function tick() {
      if (document.visibilityState === "visible") {
        try {
          const r = await fetch(region.dataset.refresh, {headers: {"Accept": "text/html"}});
          if (r.ok) {
            const html = await r.text();
            if (html !== last) {
              last = html;
              region.innerHTML = html;
              region.dispatchEvent(new CustomEvent("refreshed"));
            }
            if (region.querySelector("[data-final]")) {
              region.dispatchEvent(new CustomEvent("final"));
              return;
            }
          }
        } catch (e) { /* the server restarted or the network blinked: try again */ }
      }
      setTimeout(tick, every);
    }
    setTimeout(tick, every);
  });
})();

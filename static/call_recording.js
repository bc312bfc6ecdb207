// The call page: a transcript line's time plays the recording from there.
// Without JavaScript the link still opens the recording at that time (#t=).
(function () {
  "use strict";
  var player = document.getElementById("recording");
  if (!player) return;
  document.querySelectorAll("a.seek").forEach(function (link) {
    link.addEventListener("click", function (event) {
      event.preventDefault();
      player.currentTime = parseFloat(link.dataset.seconds) || 0;
      player.play();
    });
  });
})();

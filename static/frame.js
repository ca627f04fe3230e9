/* A page in an iframe on another site (the signup form, the embeds' preview) tells the page
 * around it how tall it is, so that the frame fits it: static/resize.js on that page listens.
 * It tells on load, on every change of its size (ResizeObserver: a message, a narrower
 * frame), and again when the host's script asks (it may load after the frame). Only a height
 * goes out, to any origin: it is no secret, and the host checks where it came from. */
(function () {
  "use strict";
  if (window.parent === window) { return; }
  var MESSAGE = "newsletters:height";
  var told = -1;

  function tell(again) {
    // The page's own height: the html element's box, not the frame's viewport.
    var height = Math.ceil(document.documentElement.getBoundingClientRect().height);
    if (height === told && !again) { return; }
    told = height;
    window.parent.postMessage({ type: MESSAGE, height: height }, "*");
  }

  window.addEventListener("message", function (event) {
    var data = event.data;
    if (event.source === window.parent && data && data.type === "newsletters:measure") {
      tell(true);
    }
  });
  if (window.ResizeObserver) {
    new ResizeObserver(function () { tell(false); }).observe(document.documentElement);
  } else {
    window.addEventListener("resize", function () { tell(false); });
  }
  window.addEventListener("load", function () { tell(true); });
  tell(true);
})();

/* newsletters: fits each signup iframe of this page to its form (optional; without it the
 * frame keeps the height of its snippet). The framed page posts its height
 * ({type: "newsletters:height", height: N}) on load, on every change and after a signup;
 * this script takes only messages of that shape, from the very frame whose src has the
 * sender's origin, and sets that frame's height. Nothing else of the page is touched. */
(function () {
  "use strict";
  if (window.__nlResize) { return; }
  window.__nlResize = true;
  var MAX_HEIGHT = 4000;

  function originOf(url) {
    try { return new URL(url, document.baseURI).origin; } catch (error) { return null; }
  }

  function frameOf(source) {
    var frames = document.getElementsByTagName("iframe");
    for (var i = 0; i < frames.length; i++) {
      if (frames[i].contentWindow === source) { return frames[i]; }
    }
    return null;
  }

  window.addEventListener("message", function (event) {
    var data = event.data;
    if (!data || typeof data !== "object" || data.type !== "newsletters:height") { return; }
    var height = Number(data.height);
    if (!isFinite(height) || height <= 0 || height > MAX_HEIGHT) { return; }
    var frame = event.source && frameOf(event.source);
    if (!frame || originOf(frame.src) !== event.origin) { return; }
    // Through the CSSOM, which no Content-Security-Policy refuses (a style="" would be).
    frame.style.setProperty("height", Math.ceil(height) + "px");
  });

  // Frames that loaded before this script told their height to nobody: ask them again. A
  // frame still loading (about:blank, this page's own) tells it on its load anyway.
  function ask() {
    var frames = document.getElementsByTagName("iframe");
    for (var i = 0; i < frames.length; i++) {
      var origin = originOf(frames[i].src), view = frames[i].contentWindow, href = null;
      if (!origin || origin === "null" || !view) { continue; }
      try { href = view.location.href; } catch (error) { /* another origin's page: loaded */ }
      if (href !== "about:blank") { view.postMessage({ type: "newsletters:measure" }, origin); }
    }
  }
  if (document.readyState === "loading") {
    document.addEventListener("DOMContentLoaded", ask);
  } else {
    ask();
  }
})();

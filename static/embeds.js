/* The editors' settings page: a copy button per embed snippet (admin/_embeds.html).
 * The clipboard API where the page may use it (https, or localhost); otherwise the snippet is
 * selected for the editor's own Ctrl+C. Either way the status next to the button says so. */
(function () {
  "use strict";
  function select(node) {
    var range = document.createRange();
    range.selectNodeContents(node);
    var selection = window.getSelection();
    selection.removeAllRanges();
    selection.addRange(range);
  }

  function copyBySelection(node) {
    select(node);
    try {
      return document.execCommand("copy");
    } catch (error) {
      return false;
    }
  }

  Array.prototype.forEach.call(document.querySelectorAll("button[data-copy]"), function (button) {
    var code = document.getElementById(button.getAttribute("data-copy"));
    var status = button.parentNode.querySelector(".copy-status");
    var timer;
    function say(text) {
      clearTimeout(timer);
      status.textContent = text;
      timer = setTimeout(function () { status.textContent = ""; }, 4000);
    }
    function fallback() {
      var copied = copyBySelection(code);
      if (!copied) { code.focus(); select(code); }
      say(status.getAttribute(copied ? "data-copied" : "data-select"));
    }
    button.addEventListener("click", function () {
      var text = code.textContent;
      if (navigator.clipboard && window.isSecureContext) {
        navigator.clipboard.writeText(text).then(function () {
          say(status.getAttribute("data-copied"));
        }, fallback);
      } else {
        fallback();
      }
    });
  });
})();

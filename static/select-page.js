// The subscriber list's "select all on this page": a box in the table's head that ticks or
// clears every row's box, and shows when only some are ticked. Without script it stays hidden
// and each row is ticked by hand.
(function () {
  "use strict";
  var all = document.getElementById("select-page");
  var form = document.getElementById("selection");
  if (!all || !form) return;
  var rows = form.querySelectorAll('input[type=checkbox][name=id]');
  if (!rows.length) return;
  all.hidden = false;
  function sync() {
    var ticked = 0;
    rows.forEach(function (box) { if (box.checked) ticked++; });
    all.checked = ticked === rows.length;
    all.indeterminate = ticked > 0 && ticked < rows.length;
  }
  all.addEventListener("change", function () {
    rows.forEach(function (box) { box.checked = all.checked; });
    sync();
  });
  rows.forEach(function (box) { box.addEventListener("change", sync); });
  sync();
})();

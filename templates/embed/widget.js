/* newsletters signup widget: renders a form where this <script> tag stands.
 * Options, as attributes of the script tag:
 *   data-newsletters="slug-a slug-b"  one form with a checkbox per newsletter (one mail)
 *   data-name="true"                  also ask for a name
 * Style it from the host page: every element has an nl-widget__* class; the defaults below
 * use :where() so that any selector of the host page wins. */
(function () {
  "use strict";
  var settings = {{ settings|tojson }};
  var script = document.currentScript;
  if (!script) { return; }
  var count = (window.__nlWidgets = (window.__nlWidgets || 0) + 1);
  var uid = "nl-" + settings.slug + "-" + count;

  if (!document.getElementById("nl-widget-style")) {
    var style = document.createElement("style");
    style.id = "nl-widget-style";
    style.textContent = [
      ":where(.nl-widget){font:15px/1.4 system-ui,-apple-system,'Segoe UI',Roboto,sans-serif;max-width:32rem;margin:1rem 0}",
      ":where(.nl-widget__row){display:flex;gap:6px}",
      ":where(.nl-widget__input){flex:1;min-width:0;padding:8px 10px;font:inherit;border:1px solid #c4c7cc;border-radius:5px}",
      ":where(.nl-widget__input[aria-invalid=true]){border-color:#b3261e}",
      ":where(.nl-widget__button){padding:8px 14px;font:inherit;font-weight:600;color:#fff;background:#0b57d0;border:0;border-radius:5px;cursor:pointer}",
      ":where(.nl-widget__button[disabled]){opacity:.6;cursor:wait}",
      ":where(.nl-widget__choices){border:0;margin:0 0 6px;padding:0}",
      ":where(.nl-widget__choice){display:block}",
      ":where(.nl-widget__note){color:#5f6368;font-size:12px;margin:4px 0 0}",
      ":where(.nl-widget__message){margin:6px 0 0;font-weight:600}",
      ":where(.nl-widget__message--error){color:#b3261e}",
      ":where(.nl-widget__message--success){color:#146c2e}",
      ".nl-widget__trap{position:absolute;left:-10000px;width:1px;height:1px;overflow:hidden}",
      ".nl-widget__label{position:absolute;width:1px;height:1px;overflow:hidden;clip:rect(0 0 0 0);white-space:nowrap}"
    ].join("\n");
    document.head.appendChild(style);
  }

  function el(tag, className, attrs) {
    var node = document.createElement(tag);
    if (className) { node.className = className; }
    for (var key in attrs || {}) { node.setAttribute(key, attrs[key]); }
    return node;
  }

  var slugs = (script.getAttribute("data-newsletters") || "").split(/[\s,]+/).filter(function (s) {
    return Object.prototype.hasOwnProperty.call(settings.newsletters, s);
  });
  var many = slugs.length > 0;

  var root = el("div", "nl-widget", { "data-newsletter": settings.slug });
  var form = el("form", "nl-widget__form", {
    method: "post", action: many ? settings.multiAction : settings.action, novalidate: ""
  });

  if (many) {
    var choices = el("fieldset", "nl-widget__choices");
    var legend = el("legend", "nl-widget__label");
    legend.textContent = "Newsletters";
    choices.appendChild(legend);
    slugs.forEach(function (slug) {
      var label = el("label", "nl-widget__choice");
      var box = el("input", "nl-widget__checkbox", { type: "checkbox", name: "newsletter", value: slug });
      box.defaultChecked = true;
      box.checked = true;
      label.appendChild(box);
      label.appendChild(document.createTextNode(" " + settings.newsletters[slug]));
      choices.appendChild(label);
    });
    form.appendChild(choices);
  }

  var row = el("div", "nl-widget__row");
  var label = el("label", "nl-widget__label", { "for": uid + "-email" });
  label.textContent = "Email (required)";
  var input = el("input", "nl-widget__input", {
    type: "email", id: uid + "-email", name: "email", required: "", maxlength: "254",
    autocomplete: "email", placeholder: settings.texts.placeholder,
    "aria-describedby": uid + "-message"
  });
  var button = el("button", "nl-widget__button", { type: "submit" });
  button.textContent = settings.texts.button;
  row.appendChild(label);
  row.appendChild(input);
  row.appendChild(button);
  form.appendChild(row);

  if (script.getAttribute("data-name") === "true") {
    var nameLabel = el("label", "nl-widget__label", { "for": uid + "-name" });
    nameLabel.textContent = "Name (optional)";
    var nameInput = el("input", "nl-widget__input nl-widget__name", {
      type: "text", id: uid + "-name", name: "name", maxlength: "200", placeholder: "Name", autocomplete: "name"
    });
    form.appendChild(nameLabel);
    form.appendChild(nameInput);
  }

  // Hidden from people and from screen readers; bots fill it and are ignored.
  var trap = el("div", "nl-widget__trap", { "aria-hidden": "true" });
  trap.appendChild(el("input", "", { type: "text", name: "website", tabindex: "-1", autocomplete: "off" }));
  form.appendChild(trap);

  var message = el("p", "nl-widget__message", { id: uid + "-message", role: "status", "aria-live": "polite" });
  var note = el("p", "nl-widget__note");
  note.textContent = settings.texts.required_note;
  form.appendChild(message);
  form.appendChild(note);
  root.appendChild(form);
  script.parentNode.insertBefore(root, script.nextSibling);

  function show(text, kind) {
    message.textContent = text;
    message.className = "nl-widget__message nl-widget__message--" + kind;
    input.setAttribute("aria-invalid", kind === "error" ? "true" : "false");
  }

  form.addEventListener("submit", function (event) {
    event.preventDefault();
    if (!input.value.trim() || input.value.indexOf("@") < 1) {
      show(settings.texts.invalid_email, "error");
      input.focus();
      return;
    }
    // Clear the last answer while this one is on its way, so no stale message stands for it.
    message.textContent = "";
    message.className = "nl-widget__message";
    form.setAttribute("aria-busy", "true");
    button.disabled = true;
    fetch(form.action, {
      method: "POST",
      body: new URLSearchParams(new FormData(form)),
      headers: { "Accept": "application/json" },
      credentials: "omit",
      mode: "cors"
    }).then(function (response) {
      return response.json().then(function (body) { return { ok: response.ok, body: body }; });
    }).then(function (answer) {
      if (answer.ok) {
        show((answer.body.title || settings.defaults.success_title) + ". " +
             (answer.body.message || settings.defaults.success_text), "success");
        form.reset();
      } else {
        show(answer.body.message || settings.texts.invalid_email, "error");
        input.focus();
      }
    }).catch(function () {
      show("Could not reach the newsletter service. Please try again.", "error");
    }).then(function () {
      button.disabled = false;
      form.removeAttribute("aria-busy");
    });
  });
})();

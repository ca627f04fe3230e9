/* newsletters signup widget: renders a form where this <script> tag stands.
 * Options, as attributes of the script tag:
 *   data-newsletters="slug-a slug-b"  one form with a checkbox per newsletter (one mail)
 *   data-name="true"                  also ask for a name
 * Style it from the host page: every element has an nl-widget__* class; the default styles
 * (widget.css) use :where() so that any selector of the host page wins. A host page with a
 * Content-Security-Policy names this product's origin in script-src, connect-src and
 * style-src. */
(function () {
  "use strict";
  var settings = {{ settings|tojson }};
  var script = document.currentScript;
  if (!script) { return; }
  var count = (window.__nlWidgets = (window.__nlWidgets || 0) + 1);
  var uid = "nl-" + settings.slug + "-" + count;

  // A stylesheet from this product's origin, not an injected <style>: a strict
  // Content-Security-Policy refuses every inline style, but lets this stylesheet in the way
  // it lets this script in (style-src naming our origin). Refused, the form still works.
  if (!document.getElementById("nl-widget-style")) {
    var link = document.createElement("link");
    link.id = "nl-widget-style";
    link.rel = "stylesheet";
    link.href = settings.stylesheet;
    (document.head || document.documentElement).appendChild(link);
  }

  function el(tag, className, attrs) {
    var node = document.createElement(tag);
    if (className) { node.className = className; }
    for (var key in attrs || {}) { node.setAttribute(key, attrs[key]); }
    return node;
  }

  // What must stay out of sight is hidden from script (CSSOM), which no CSP refuses, and
  // "important", which no rule of the host page overrides: never by the stylesheet.
  var VISUALLY_HIDDEN = {
    position: "absolute", width: "1px", height: "1px", margin: "-1px", padding: "0",
    border: "0", overflow: "hidden", clip: "rect(0 0 0 0)", "clip-path": "inset(50%)",
    "white-space": "nowrap"
  };
  function hideVisually(node) {
    for (var property in VISUALLY_HIDDEN) {
      node.style.setProperty(property, VISUALLY_HIDDEN[property], "important");
    }
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
    var legend = hideVisually(el("legend", "nl-widget__label"));
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
  var label = hideVisually(el("label", "nl-widget__label", { "for": uid + "-email" }));
  label.textContent = "Email (required)";
  var input = el("input", "nl-widget__input", {
    type: "email", id: uid + "-email", name: "email", required: "", maxlength: "254",
    autocomplete: "email", placeholder: settings.texts.placeholder,
    "aria-describedby": uid + "-message"
  });
  // The asterisk that the note's "* indicates required" speaks of; the label says it in words.
  var field = el("span", "nl-widget__field");
  var mark = el("span", "nl-widget__required", { "aria-hidden": "true" });
  mark.textContent = "*";
  field.appendChild(input);
  field.appendChild(mark);
  var button = el("button", "nl-widget__button", { type: "submit" });
  button.textContent = settings.texts.button;
  row.appendChild(label);
  row.appendChild(field);
  row.appendChild(button);
  form.appendChild(row);

  if (script.getAttribute("data-name") === "true") {
    var nameLabel = hideVisually(el("label", "nl-widget__label", { "for": uid + "-name" }));
    nameLabel.textContent = "Name (optional)";
    var nameInput = el("input", "nl-widget__input nl-widget__name", {
      type: "text", id: uid + "-name", name: "name", maxlength: "200", placeholder: "Name", autocomplete: "name"
    });
    form.appendChild(nameLabel);
    form.appendChild(nameInput);
  }

  // Hidden from people, from the keyboard and from screen readers; bots fill it and are ignored.
  var trap = el("div", "nl-widget__trap", { "aria-hidden": "true" });
  trap.hidden = true;
  trap.style.setProperty("display", "none", "important");
  trap.appendChild(el("input", "", {
    type: "text", name: "website", tabindex: "-1", autocomplete: "off", "aria-hidden": "true"
  }));
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

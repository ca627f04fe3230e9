/* newsletters signup widget: renders a form where this <script> tag stands.
 * Options, as attributes of the script tag:
 *   data-newsletters="slug-a slug-b"  one form with a checkbox per newsletter (one mail)
 *   data-name="true"                  also ask for a name
 *   data-lang="uk"                    the page's language (as ?lang=uk on embed.js); the
 *                                     reader's browser language wins unless the newsletter
 *                                     pins its own (the server's rule, newsletters/i18n.py)
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

  function supported(language) {
    var primary = String(language || "").toLowerCase().split(/[-_]/)[0];
    return Object.prototype.hasOwnProperty.call(settings.texts, primary) ? primary : null;
  }
  // Weakest first: the newsletter's language, the embed's, the browser's first choice.
  var language = supported(script.getAttribute("data-lang")) || settings.asked || settings.language;
  if (!settings.pinned) {
    var first = (navigator.languages && navigator.languages[0]) || navigator.language;
    language = supported(first) || language;
  }
  var texts = settings.texts[language] || settings.texts[settings.language];
  // Fills "%(name)s" placeholders, as the server's catalogue writes them.
  function format(text, values) {
    return text.replace(/%\((\w+)\)s/g, function (whole, key) {
      return Object.prototype.hasOwnProperty.call(values, key) ? values[key] : whole;
    });
  }

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

  var root = el("div", "nl-widget", { "data-newsletter": settings.slug, lang: language });
  var form = el("form", "nl-widget__form", {
    method: "post", action: many ? settings.multiAction : settings.action, novalidate: ""
  });

  if (many) {
    var choices = el("fieldset", "nl-widget__choices");
    var legend = hideVisually(el("legend", "nl-widget__label"));
    legend.textContent = texts.newsletters;
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
  label.textContent = texts.email_label;
  var input = el("input", "nl-widget__input", {
    type: "email", id: uid + "-email", name: "email", required: "",
    maxlength: String(settings.maxLength), autocomplete: "email", placeholder: texts.placeholder,
    "aria-describedby": uid + "-message"
  });
  // The asterisk that the note's "* indicates required" speaks of; the label says it in words.
  var field = el("span", "nl-widget__field");
  var mark = el("span", "nl-widget__required", { "aria-hidden": "true" });
  mark.textContent = "*";
  field.appendChild(input);
  field.appendChild(mark);
  var button = el("button", "nl-widget__button", { type: "submit" });
  button.textContent = texts.button;
  row.appendChild(label);
  row.appendChild(field);
  row.appendChild(button);
  form.appendChild(row);

  if (script.getAttribute("data-name") === "true") {
    var nameLabel = hideVisually(el("label", "nl-widget__label", { "for": uid + "-name" }));
    nameLabel.textContent = texts.name_label;
    var nameInput = el("input", "nl-widget__input nl-widget__name", {
      type: "text", id: uid + "-name", name: "name", maxlength: "200",
      placeholder: texts.name_placeholder, autocomplete: "name"
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
  // The language the reader sees, kept for their mails; and, after a "Did you mean …?", the
  // address as typed, so that sending it again keeps it.
  var lang = el("input", "", { type: "hidden", name: "lang", value: language });
  var keep = el("input", "", { type: "hidden", name: "accept_as_typed", value: "" });
  form.appendChild(lang);
  form.appendChild(keep);

  var message = el("p", "nl-widget__message", { id: uid + "-message", role: "status", "aria-live": "polite" });
  var fix = el("button", "nl-widget__suggestion", { type: "button" });
  fix.hidden = true;
  var note = el("p", "nl-widget__note");
  note.textContent = texts.required_note;
  form.appendChild(message);
  form.appendChild(fix);
  form.appendChild(note);
  root.appendChild(form);
  script.parentNode.insertBefore(root, script.nextSibling);

  function show(text, kind) {
    message.textContent = text;
    message.className = "nl-widget__message nl-widget__message--" + kind;
    input.setAttribute("aria-invalid", kind === "error" ? "true" : "false");
  }

  // A likely typo (name@gmial.com): one click takes the suggested address; sending the
  // address again as it stands keeps it.
  var suggested = null;
  function suggest(suggestion, typed) {
    suggested = suggestion;
    keep.value = typed;
    fix.textContent = format(texts.use_suggestion, { suggestion: suggestion });
    fix.hidden = false;
    var detail = el("span", "nl-widget__detail");
    detail.textContent = format(texts.keep_typed, { button: texts.button, typed: typed });
    message.appendChild(detail);
  }
  function unsuggest() {
    suggested = null;
    fix.hidden = true;
  }
  fix.addEventListener("click", function () {
    input.value = suggested;
    keep.value = "";
    unsuggest();
    if (form.requestSubmit) { form.requestSubmit(); } else { form.dispatchEvent(new Event("submit", { cancelable: true })); }
  });

  // After a success only the success message stays: the fields, the note and the button go,
  // hidden from script (a host page's or our stylesheet's display rules beat `hidden`).
  function succeed(text) {
    Array.prototype.forEach.call(form.children, function (child) {
      if (child !== message) { child.style.setProperty("display", "none", "important"); }
    });
    show(text, "success");
    message.setAttribute("tabindex", "-1");
    message.focus();
  }

  form.addEventListener("submit", function (event) {
    event.preventDefault();
    if (!input.value.trim() || input.value.indexOf("@") < 1) {
      show(texts.invalid_email, "error");
      input.focus();
      return;
    }
    unsuggest();
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
        var text = many ? texts.several_success_text : texts.success_text;
        succeed((answer.body.title || texts.success_title) + ". " + (answer.body.message || text));
        form.reset();
      } else {
        show(answer.body.message || texts.invalid_email, "error");
        if (answer.body.suggestion) { suggest(answer.body.suggestion, input.value.trim()); }
        input.focus();
      }
    }).catch(function () {
      show(texts.unreachable, "error");
    }).then(function () {
      button.disabled = false;
      form.removeAttribute("aria-busy");
    });
  });
})();

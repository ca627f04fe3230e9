/* newsletters signup widget: renders a form where this <script> tag stands.
 * Options, as attributes of the script tag:
 *   data-newsletters="slug-a slug-b"  one form with a checkbox per newsletter (one mail)
 *   data-name="true"                  also ask for a name
 *   data-lang="uk"                    the page's language (as ?lang=uk on embed.js); the
 *                                     reader's browser language wins unless the newsletter
 *                                     pins its own (the server's rule, newsletters/i18n.py)
 *   data-accent="#8a1538"             the button's colour, instead of the newsletter's accent
 *                                     (its text turns white or dark to stay readable)
 * Style it from the host page: every element has an nl-widget__* class; the default styles
 * (widget.css) use :where() so that any selector of the host page wins, and take the accent
 * from the custom properties --nl-accent, --nl-on-accent and --nl-link of .nl-widget. A host page with a
 * Content-Security-Policy names this product's origin in script-src, connect-src and
 * style-src, and blob: in worker-src: without that the widget still works, solving its
 * challenge on the page's own thread, and the browser reports the refused worker once. */
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

  // WCAG 2.2's relative luminance and contrast (1.4.3), as newsletters/colors.py has them:
  // the button's text is white or near-black, whichever reads better on the accent, and the
  // accent is a link's colour on white only where it reads there (4.5:1).
  function luminance(hex) {
    var channels = [1, 3, 5].map(function (i) {
      var c = parseInt(hex.substr(i, 2), 16) / 255;
      return c <= 0.04045 ? c / 12.92 : Math.pow((c + 0.055) / 1.055, 2.4);
    });
    return 0.2126 * channels[0] + 0.7152 * channels[1] + 0.0722 * channels[2];
  }
  function contrast(first, second) {
    var a = luminance(first), b = luminance(second);
    return (Math.max(a, b) + 0.05) / (Math.min(a, b) + 0.05);
  }
  function colours(hex) {
    var light = settings.accent.light, dark = settings.accent.dark;
    return {
      accent: hex,
      text: contrast(light, hex) >= contrast(dark, hex) ? light : dark,
      link: contrast(hex, "#ffffff") >= 4.5 ? hex : dark
    };
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
  // The newsletter's accent (sent by the server with its readable text colour), or the one
  // the host asks for; set through the CSSOM, which no Content-Security-Policy refuses.
  var accent = settings.accent;
  var asked = script.getAttribute("data-accent");
  if (asked && /^#[0-9a-f]{6}$/i.test(asked.trim())) { accent = colours(asked.trim()); }
  root.style.setProperty("--nl-accent", accent.accent);
  root.style.setProperty("--nl-on-accent", accent.text);
  root.style.setProperty("--nl-link", accent.link);
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
  // Where the form is, when it was shown, and its proof of work (see "Bot defence" below).
  function hidden(name, value) {
    var node = el("input", "", { type: "hidden", name: name, value: value });
    form.appendChild(node);
    return node;
  }
  // The page this form is on, as the server keeps it (attribution.py): its path and its
  // utm_* parameters, nothing else of its query, no fragment. Cut here already, so the rest
  // of the article's URL never leaves the reader's browser.
  var pageUrl = (function () {
    var kept = [];
    (location.search || "").replace(/^\?/, "").split("&").forEach(function (pair) {
      if (/^utm_/i.test(pair)) { kept.push(pair); }
    });
    return location.origin + location.pathname + (kept.length ? "?" + kept.join("&") : "");
  })();
  hidden("form", "widget");
  hidden("page", pageUrl);
  var rendered = hidden("rendered", "");
  var altcha = hidden("altcha", "");

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
  function succeed(title, text) {
    Array.prototype.forEach.call(form.children, function (child) {
      if (child !== message) { child.style.setProperty("display", "none", "important"); }
    });
    show("", "success");
    var heading = el("strong", "nl-widget__title");
    heading.textContent = title;
    var detail = el("span", "nl-widget__detail");
    detail.textContent = text;
    message.appendChild(heading);
    message.appendChild(detail);
    message.setAttribute("tabindex", "-1");
    message.focus();
  }

  // Bot defence (the server's newsletters/proof.py): as the widget renders it asks for a
  // proof-of-work challenge (which also counts this view of the form) and solves it while the
  // reader types; a submit waits for the solution. The solver is the product's own
  // proof-worker.js, run in a worker made from a blob: that imports it. A worker cannot be
  // made from another origin's URL, and fetching the file's text would need CORS on static
  // files; importScripts, like a <script>, needs none, and the browser caches the file for
  // every widget and page. A host page whose CSP refuses blob: workers gets the same file as
  // a <script> (its CSP lets this product's scripts in) and searches in slices of ~20 ms on
  // the page's own thread. Whatever fails, the signup goes without a solution: unverified,
  // and it still works.
  var manyQuery = slugs.map(function (slug) { return "newsletter=" + encodeURIComponent(slug); });
  var challengeUrl = (many ? settings.challengeMany + "?" + manyQuery.join("&") + "&" : settings.challenge + "?") +
    "form=widget&page=" + encodeURIComponent(pageUrl);
  // A solution this close to its expiry is not trusted to arrive in time.
  var EXPIRY_MARGIN_MS = 15000;
  var WORKER_START_MS = 5000;
  var expires = 0;

  function maxNumber(challenge) {
    return challenge.maxNumber != null ? challenge.maxNumber : challenge.maxnumber;
  }

  // Resolves with the number, or rejects if no worker runs. The first widget of the page
  // tries alone: each refused worker is a violation that the host's console (and its CSP
  // reports) would show again for every other widget.
  function solveInWorker(challenge) {
    if (window.__nlBlobWorkerRuns) {
      return window.__nlBlobWorkerRuns.then(function (runs) {
        if (!runs) { throw new Error("no blob: worker on this page"); }
        return startWorker(challenge);
      });
    }
    var tell;
    window.__nlBlobWorkerRuns = new Promise(function (resolve) { tell = resolve; });
    return startWorker(challenge, tell);
  }

  // Solves in a blob: worker; `tell(runs)`, if given, learns once whether the worker started.
  function startWorker(challenge, tell) {
    return new Promise(function (resolve, reject) {
      var source = "importScripts(" + JSON.stringify(settings.solver) + ");postMessage({ready:true});";
      var url = URL.createObjectURL(new Blob([source], { type: "text/javascript" }));
      var worker, timer, told = false;
      function started(runs) {
        clearTimeout(timer);
        URL.revokeObjectURL(url);
        if (!told && tell) { tell(runs); }
        told = true;
      }
      function fail(error) {
        started(false);
        if (worker) { worker.terminate(); }
        reject(error || new Error("no worker"));
      }
      try {
        worker = new Worker(url);
      } catch (error) { // refused by the host page's Content-Security-Policy
        fail(error);
        return;
      }
      // A worker refused without an error event must not hold the form for ever.
      timer = setTimeout(fail, WORKER_START_MS);
      worker.onerror = function (event) {
        if (event.preventDefault) { event.preventDefault(); }
        fail(event.error);
      };
      worker.onmessage = function (event) {
        var answer = event.data || {};
        if (answer.ready) {
          started(true);
          return;
        }
        worker.terminate();
        resolve(answer.number);
      };
      worker.postMessage({ salt: challenge.salt, challenge: challenge.challenge, maxnumber: maxNumber(challenge) });
    });
  }

  function loadSolver() {
    if (window.NewslettersProof) { return Promise.resolve(window.NewslettersProof); }
    if (!window.__nlSolverLoading) {
      window.__nlSolverLoading = new Promise(function (resolve, reject) {
        var tag = document.createElement("script");
        tag.src = settings.solver;
        tag.async = true;
        tag.onload = function () {
          if (window.NewslettersProof) { resolve(window.NewslettersProof); } else { reject(new Error("no solver")); }
        };
        tag.onerror = function () { reject(new Error("solver refused")); };
        (document.head || document.documentElement).appendChild(tag);
      });
    }
    return window.__nlSolverLoading;
  }

  function solveHere(challenge) {
    return loadSolver().then(function (solver) {
      return solver.solveInSlices(challenge.salt, challenge.challenge, maxNumber(challenge));
    });
  }

  function prove() {
    altcha.value = "";
    expires = 0;
    return fetch(challengeUrl, {
      headers: { "Accept": "application/json" }, credentials: "omit", mode: "cors"
    }).then(function (response) {
      if (!response.ok) { throw new Error("challenge refused: " + response.status); }
      return response.json();
    }).then(function (answer) {
      // The time the form was shown: kept when an expired challenge is replaced.
      if (!rendered.value) { rendered.value = answer.rendered || ""; }
      var challenge = answer.challenge;
      var solving = window.Worker && window.Blob && window.URL && URL.createObjectURL
        ? solveInWorker(challenge).catch(function () { return solveHere(challenge); })
        : solveHere(challenge);
      return solving.then(function (number) {
        if (typeof number !== "number") { return; }
        altcha.value = btoa(JSON.stringify({
          algorithm: challenge.algorithm, challenge: challenge.challenge, number: number,
          salt: challenge.salt, signature: challenge.signature
        }));
        var match = /[?&]expires=(\d+)/.exec(challenge.salt);
        expires = match ? Number(match[1]) * 1000 : Infinity;
      });
    }).catch(function () {
      altcha.value = "";
    });
  }
  var proven = prove();
  // Resolves once the form may go: with a solution, or without one when there will be none.
  function proofReady() {
    if (altcha.value && Date.now() >= expires - EXPIRY_MARGIN_MS) { proven = prove(); }
    return proven;
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
    proofReady().then(function () {
      return fetch(form.action, {
        method: "POST",
        body: new URLSearchParams(new FormData(form)),
        headers: { "Accept": "application/json" },
        credentials: "omit",
        mode: "cors"
      });
    }).then(function (response) {
      return response.json().then(function (body) { return { ok: response.ok, body: body }; });
    }).then(function (answer) {
      if (answer.ok) {
        var text = many ? texts.several_success_text : texts.success_text;
        succeed(answer.body.title || texts.success_title, answer.body.message || text);
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

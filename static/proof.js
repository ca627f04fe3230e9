/* newsletters: the bot defence of this site's own signup forms (hosted page, index, iframe).
 *
 * Each form[data-challenge] gets its proof-of-work challenge (newsletters/proof.py) as soon as
 * the page has loaded and solves it in a Web Worker (proof-worker.js, beside this file) while
 * the reader types; the solution goes into the form's hidden `altcha` field. The form's
 * `rendered` stays as the server wrote it: the time the form was shown. A submit before the
 * solution is ready waits for it; a challenge that expired meanwhile is replaced first.
 * Whatever fails (no Worker, no network, a refused challenge) lets the form go without a
 * solution: the signup then works as an unverified one. Forms are solved one at a time (the
 * index has one per newsletter), the one the reader is in first. The "Use …" form of a typo
 * suggestion (form.suggestion-fix) carries the server's fields already and is left alone. */
(function () {
  "use strict";
  var script = document.currentScript;
  if (!script || !window.fetch || !window.Promise) { return; }
  var solver = new URL("proof-worker.js", script.src).href;
  // A solution this close to its expiry is not trusted to arrive in time.
  var EXPIRY_MARGIN_MS = 15000;

  function expiresAt(salt) {
    var match = /[?&]expires=(\d+)/.exec(salt || "");
    return match ? Number(match[1]) * 1000 : Infinity;
  }

  function payload(challenge, number) {
    return btoa(JSON.stringify({
      algorithm: challenge.algorithm, challenge: challenge.challenge, number: number,
      salt: challenge.salt, signature: challenge.signature
    }));
  }

  // Resolves with the number that solves `challenge`, or rejects.
  function solve(challenge) {
    return new Promise(function (resolve, reject) {
      var worker = new Worker(solver);
      worker.onmessage = function (event) {
        worker.terminate();
        var number = event.data && event.data.number;
        if (typeof number === "number") { resolve(number); } else { reject(new Error("unsolved")); }
      };
      worker.onerror = function (event) {
        worker.terminate();
        reject(event.error || new Error("worker failed"));
      };
      worker.postMessage({
        salt: challenge.salt,
        challenge: challenge.challenge,
        maxnumber: challenge.maxNumber != null ? challenge.maxNumber : challenge.maxnumber
      });
    });
  }

  // One solve at a time: several workers at once would only share the same cores, and the
  // form being filled in would wait for all of them.
  var queue = [], busy = false;
  function next() {
    if (busy || !queue.length) { return; }
    busy = true;
    var task = queue.shift();
    task.run().then(function () {
      busy = false;
      task.done();
      next();
    });
  }
  function enqueue(run) {
    var task = { run: run };
    task.promise = new Promise(function (resolve) { task.done = resolve; });
    queue.push(task);
    next();
    return task;
  }
  function hurry(task) {
    var at = queue.indexOf(task);
    if (at > 0) { queue.splice(at, 1); queue.unshift(task); }
  }

  // Keeps `altcha` of one form filled; its task settles when the field holds a solution, or
  // when there will be none.
  function guard(form) {
    var field = form.elements.namedItem("altcha");
    if (!field || !window.Worker) { return; }
    var expires = 0, task = null, holding = false, release = false;

    function fetchAndSolve() {
      field.value = "";
      expires = 0;
      return fetch(form.getAttribute("data-challenge"), {
        credentials: "omit", headers: { "Accept": "application/json" }
      }).then(function (response) {
        if (!response.ok) { throw new Error("challenge refused: " + response.status); }
        return response.json();
      }).then(function (answer) {
        var challenge = answer.challenge;
        return solve(challenge).then(function (number) {
          field.value = payload(challenge, number);
          expires = expiresAt(challenge.salt);
        });
      }).catch(function () {
        field.value = ""; // sent without: an unverified signup, which still works
      });
    }

    // A form shown again after a refusal carries the solution it was sent with (unspent).
    if (field.value) {
      try {
        expires = expiresAt(JSON.parse(atob(field.value)).salt);
      } catch (error) {
        field.value = "";
      }
    }
    task = field.value ? { promise: Promise.resolve() } : enqueue(fetchAndSolve);
    form.addEventListener("focusin", function () { hurry(task); });

    form.addEventListener("submit", function (event) {
      if (release) { release = false; return; } // our own submit, after the wait
      var fresh = field.value && Date.now() < expires - EXPIRY_MARGIN_MS;
      if (fresh && !holding) { return; }
      event.preventDefault();
      if (holding) { return; } // a second press while waiting: the first one goes
      holding = true;
      var submitter = event.submitter || null;
      if (field.value && !fresh) { task = enqueue(fetchAndSolve); }
      hurry(task);
      task.promise.then(function () {
        holding = false;
        if (form.requestSubmit) {
          release = true; // the submit event this fires, synchronously, is let through
          form.requestSubmit(submitter && submitter.form === form ? submitter : undefined);
          release = false;
        } else {
          form.submit(); // fires no submit event
        }
      });
    });
  }

  function start() {
    Array.prototype.forEach.call(document.querySelectorAll("form[data-challenge]"), guard);
  }
  if (document.readyState === "loading") {
    document.addEventListener("DOMContentLoaded", start);
  } else {
    start();
  }
}());

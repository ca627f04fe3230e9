/* newsletters: the proof-of-work solver (ALTCHA v1, SHA-256), for the signup forms.
 *
 * Finds the integer n in [0, maxnumber] with hex(SHA-256(salt + String(n))) === challenge.
 * Two ways to use it, one code:
 *   - as a Web Worker (new Worker(".../proof-worker.js"), or a blob: worker that
 *     importScripts it): post {salt, challenge, maxnumber}, receive {number} ({number: null}
 *     if no number in the range fits);
 *   - as a plain script on a page (the widget's fallback when the host page's CSP refuses a
 *     blob: worker): NewslettersProof.solveInSlices(salt, challenge, maxnumber), a promise.
 *
 * SHA-256 in plain JavaScript rather than crypto.subtle.digest: SubtleCrypto is absent on
 * pages served over plain http (not a secure context), and where it exists each digest is an
 * asynchronous call costing microseconds of promise machinery for nanoseconds of hashing,
 * which makes it several times slower for millions of tiny inputs. Here the salt's whole
 * 64-byte blocks are hashed once (the midstate); each candidate then costs one block (two if
 * the salt's tail is long), with the digits counted up in place in a reused buffer and the
 * digest compared as words, without building a hex string. */
var NewslettersProof = (function () {
  "use strict";

  var K = new Int32Array([
    0x428a2f98, 0x71374491, 0xb5c0fbcf, 0xe9b5dba5, 0x3956c25b, 0x59f111f1, 0x923f82a4, 0xab1c5ed5,
    0xd807aa98, 0x12835b01, 0x243185be, 0x550c7dc3, 0x72be5d74, 0x80deb1fe, 0x9bdc06a7, 0xc19bf174,
    0xe49b69c1, 0xefbe4786, 0x0fc19dc6, 0x240ca1cc, 0x2de92c6f, 0x4a7484aa, 0x5cb0a9dc, 0x76f988da,
    0x983e5152, 0xa831c66d, 0xb00327c8, 0xbf597fc7, 0xc6e00bf3, 0xd5a79147, 0x06ca6351, 0x14292967,
    0x27b70a85, 0x2e1b2138, 0x4d2c6dfc, 0x53380d13, 0x650a7354, 0x766a0abb, 0x81c2c92e, 0x92722c85,
    0xa2bfe8a1, 0xa81a664b, 0xc24b8b70, 0xc76c51a3, 0xd192e819, 0xd6990624, 0xf40e3585, 0x106aa070,
    0x19a4c116, 0x1e376c08, 0x2748774c, 0x34b0bcb5, 0x391c0cb3, 0x4ed8aa4a, 0x5b9cca4f, 0x682e6ff3,
    0x748f82ee, 0x78a5636f, 0x84c87814, 0x8cc70208, 0x90befffa, 0xa4506ceb, 0xbef9a3f7, 0xc67178f2
  ]);
  var IV = [0x6a09e667, 0xbb67ae85, 0x3c6ef372, 0xa54ff53a, 0x510e527f, 0x9b05688c, 0x1f83d9ab, 0x5be0cd19];

  // One compression: H (8 words) absorbs the block whose 16 words are W[0..15].
  function compress(H, W) {
    var i, x, y;
    for (i = 16; i < 64; i++) {
      x = W[i - 15];
      y = W[i - 2];
      W[i] = (((x >>> 7) | (x << 25)) ^ ((x >>> 18) | (x << 14)) ^ (x >>> 3)) +
        (((y >>> 17) | (y << 15)) ^ ((y >>> 19) | (y << 13)) ^ (y >>> 10)) +
        W[i - 7] + W[i - 16] | 0;
    }
    var a = H[0], b = H[1], c = H[2], d = H[3], e = H[4], f = H[5], g = H[6], h = H[7];
    for (i = 0; i < 64; i++) {
      x = h + (((e >>> 6) | (e << 26)) ^ ((e >>> 11) | (e << 21)) ^ ((e >>> 25) | (e << 7))) +
        ((e & f) ^ (~e & g)) + K[i] + W[i] | 0;
      y = (((a >>> 2) | (a << 30)) ^ ((a >>> 13) | (a << 19)) ^ ((a >>> 22) | (a << 10))) +
        ((a & b) ^ (a & c) ^ (b & c)) | 0;
      h = g; g = f; f = e; e = d + x | 0;
      d = c; c = b; b = a; a = x + y | 0;
    }
    H[0] = H[0] + a | 0; H[1] = H[1] + b | 0; H[2] = H[2] + c | 0; H[3] = H[3] + d | 0;
    H[4] = H[4] + e | 0; H[5] = H[5] + f | 0; H[6] = H[6] + g | 0; H[7] = H[7] + h | 0;
  }

  function utf8(text) {
    if (typeof TextEncoder !== "undefined") { return new TextEncoder().encode(text); }
    var binary = unescape(encodeURIComponent(text));
    var bytes = new Uint8Array(binary.length);
    for (var i = 0; i < binary.length; i++) { bytes[i] = binary.charCodeAt(i); }
    return bytes;
  }

  // Returns a searcher for one challenge: search(from, to) tries from..to (both included)
  // and returns the number that solves it, or null.
  function prepare(salt, challenge) {
    var target = new Int32Array(8);
    for (var t = 0; t < 8; t++) { target[t] = parseInt(challenge.substr(t * 8, 8), 16) | 0; }
    var bytes = utf8(salt);
    var whole = bytes.length - (bytes.length % 64);
    var mid = new Int32Array(IV);
    var W = new Int32Array(64);
    var b, i;
    for (b = 0; b < whole; b += 64) {
      for (i = 0; i < 16; i++) {
        W[i] = (bytes[b + 4 * i] << 24) | (bytes[b + 4 * i + 1] << 16) |
          (bytes[b + 4 * i + 2] << 8) | bytes[b + 4 * i + 3];
      }
      compress(mid, W);
    }
    var tail = bytes.length - whole; // salt bytes in the first block still to hash, < 64
    var block = new Uint8Array(128); // those, the digits, the padding: one or two blocks
    block.set(bytes.subarray(whole));
    var words = new Int32Array(32);
    var H = new Int32Array(8);
    var digits = [], blocks = 1;

    function toWords(from, to) { // the words holding bytes from..to-1
      for (var w = from >> 2, end = (to + 3) >> 2; w < end; w++) {
        words[w] = (block[4 * w] << 24) | (block[4 * w + 1] << 16) | (block[4 * w + 2] << 8) | block[4 * w + 3];
      }
    }
    // Lays out the tail for numbers of n's length: digits, 0x80, zeros, the length in bits.
    function layout(n) {
      var text = String(n);
      digits.length = text.length;
      for (var i = 0; i < text.length; i++) { digits[i] = text.charCodeAt(i); }
      var end = tail + digits.length;
      blocks = end + 9 <= 64 ? 1 : 2;
      block.fill(0, tail);
      for (i = 0; i < digits.length; i++) { block[tail + i] = digits[i]; }
      block[end] = 0x80;
      var bits = (bytes.length + digits.length) * 8;
      var last = blocks * 64;
      block[last - 4] = bits >>> 24; block[last - 3] = bits >>> 16;
      block[last - 2] = bits >>> 8; block[last - 1] = bits;
      block[last - 5] = Math.floor(bits / 0x100000000); // never above 255 here
      toWords(0, last);
    }
    function matches() {
      var i;
      for (i = 0; i < 8; i++) { H[i] = mid[i]; }
      for (i = 0; i < 16; i++) { W[i] = words[i]; }
      compress(H, W);
      if (blocks === 2) {
        for (i = 0; i < 16; i++) { W[i] = words[16 + i]; }
        compress(H, W);
      }
      if (H[0] !== target[0]) { return false; }
      for (i = 1; i < 8; i++) { if (H[i] !== target[i]) { return false; } }
      return true;
    }

    function search(from, to) {
      from = Math.max(0, Math.floor(from));
      if (!(from <= to)) { return null; }
      layout(from);
      for (var n = from; ; ) {
        if (matches()) { return n; }
        if (++n > to) { return null; }
        // Count the decimal digits up in place; a carry past the first digit lays out anew.
        var i = digits.length - 1;
        while (i >= 0 && digits[i] === 57) { digits[i] = 48; block[tail + i] = 48; i--; }
        if (i < 0) {
          layout(n);
        } else {
          block[tail + i] = ++digits[i];
          toWords(tail + i, tail + digits.length);
        }
      }
    }
    return { search: search };
  }

  // The number that solves the challenge, or null: the whole range at once.
  function solve(salt, challenge, maxnumber) {
    return prepare(salt, challenge).search(0, maxnumber);
  }

  // The same search on a page's own thread (where no worker may run), in slices of about
  // SLICE_MS: resolves with the number, or null. A message to itself between slices, not
  // setTimeout, which browsers hold back 4 ms or more once nested: a fifth of each slice.
  var SLICE_MS = 20;
  function solveInSlices(salt, challenge, maxnumber) {
    var searcher = prepare(salt, challenge);
    var now = typeof performance !== "undefined" ? function () { return performance.now(); } : Date.now;
    var later = function (step) { setTimeout(step, 0); };
    if (typeof MessageChannel !== "undefined") {
      var channel = new MessageChannel(), next = null;
      channel.port1.onmessage = function () { next(); };
      later = function (step) { next = step; channel.port2.postMessage(null); };
    }
    return new Promise(function (resolve) {
      var from = 0, size = 1000;
      (function step() {
        var began = now();
        var to = Math.min(maxnumber, from + size - 1);
        var found = searcher.search(from, to);
        if (found !== null || to >= maxnumber) {
          if (channel) { channel.port1.close(); }
          resolve(found);
          return;
        }
        from = to + 1;
        // The next slice sized for SLICE_MS at this slice's pace (at most twice as large).
        size = Math.max(500, Math.floor(size * Math.min(2, SLICE_MS / Math.max(1, now() - began))));
        later(step);
      }());
    });
  }

  return { prepare: prepare, solve: solve, solveInSlices: solveInSlices };
}());

// In a worker (its own script, or a blob: worker that imported this one): answer requests.
if (typeof document === "undefined" && typeof self !== "undefined" && typeof self.postMessage === "function") {
  self.onmessage = function (event) {
    var task = event.data || {};
    var number = null;
    try {
      number = NewslettersProof.solve(String(task.salt), String(task.challenge), Number(task.maxnumber));
    } catch (error) {
      number = null;
    }
    self.postMessage({ number: number });
  };
}

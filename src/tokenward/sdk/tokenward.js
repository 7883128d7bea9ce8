/*
 * tokenward browser SDK — wire protocol v1 (docs/protocol.md).
 *
 * Served by the gateway at /.tokenward/sdk.js. Plain ES2020, no build step, no
 * dependencies. Defines the global `tokenward` (also `window.tokenward`):
 *
 *   tokenward.fetch(input, init) -> Promise<Response>
 *       Drop-in for fetch(). Protected requests (by default every POST; see `routes`)
 *       get a fresh single-use challenge, a proof-of-work bound to the exact body bytes
 *       sent, and the header `Tokenward-Proof: v1.<challenge>.<nonce>`, with
 *       `Tokenward-Signals` (environment and input counts) and `Tokenward-Device` (the
 *       device key's signature) unless configured off. User guide: docs/browser-sdk.md.
 *       When the answer
 *       is a 401 whose JSON error carries a fresh challenge (OpenAI shape
 *       {"error": {..., "challenge": {...}}} or Anthropic shape
 *       {"type": "error", "error": {..., "challenge": {...}}}), the request is proved
 *       again and retried once. Any other response is returned untouched.
 *       Bodies: string (sent as UTF-8), ArrayBuffer, TypedArray/DataView, Blob,
 *       URLSearchParams, FormData, ReadableStream, or none; the Content-Type fetch would
 *       have set for them is kept. A plain object is refused with a TypeError:
 *       JSON.stringify it first (fetch would send "[object Object]"). `input` may be a
 *       URL or a Request; relative URLs resolve against the page, as with fetch.
 *       A route for which the gateway refuses to issue challenges (400: not protected)
 *       is remembered, and later POSTs to it go without a proof.
 *
 *   tokenward.configure({base, routes, signals, workers, device, deviceTtlDays, deviceWaitMs})
 *       -> tokenward
 *       base:    origin/prefix of the gateway, default "" (same origin). Challenges come
 *                from `${base}/.tokenward/challenge` (a cross-origin gateway must allow
 *                it with CORS, and the Tokenward-Proof/-Signals/-Device request headers).
 *       routes:  array of exact URL paths to protect (POSTs to them), or null (default)
 *                for every POST. Configuring routes prefetches one challenge per route
 *                and starts the device registration in the background.
 *       signals: true (default): send the built-in report (tokenward.collectSignals(),
 *                with the input counts of tracked fields) as
 *                `Tokenward-Signals: <b64url(JSON), no padding>`, hashed into the proof.
 *                A function returning (or resolving to) an object sends that instead.
 *                false: no signals header.
 *       workers: number of Web Workers for the search, default
 *                min(2, navigator.hardwareConcurrency || 1); 0 solves on the main thread.
 *       device:  true (default): keep a device key and sign every proved request with it
 *                (docs/protocol.md §4.2, below). false: no device key, no header.
 *       deviceTtlDays: register the key again when its registration with this gateway
 *                is older than this (default 25; gateways keep keys 30 days by default).
 *       deviceWaitMs: how long a request may wait for a registration still in flight,
 *                counted from the start of the request (default 2000); after that it
 *                goes without the device header and the registration continues.
 *       input:   true (default): observe, with no call by the page, the input that led to
 *                each protected request: counts of trusted keys, pastes and focus time in
 *                the text field the person edited last (textarea, text/search input,
 *                contenteditable). false: only fields given to trackInput are observed.
 *
 *   tokenward.trackInput(elementOrSelector) -> untrack()
 *       Narrows the observation to that field (by default the SDK observes every text
 *       field and reports the one edited last). Counts, for the prompt being written in that field (textarea, input or
 *       contenteditable; a selector also matches fields added later): trusted keydowns
 *       that type or delete text, paste (and drop) events and the pasted length, the
 *       time the field was focused, and its length. Counts only: the text is never read
 *       or sent. They go out as the `input` field of the signals and start again from
 *       zero once a proved request has carried them (a new prompt).
 *
 *   tokenward.device() -> Promise<{id, registeredAt, registration} | null>
 *       This page's device key for the configured gateway, loaded (and registered, the
 *       first time) on demand; null when it cannot have one (no IndexedDB or WebCrypto,
 *       registration not offered). `registration` ({ms, hashes, difficulty}) is set
 *       when this page load registered it.
 *   tokenward.forgetDevice() -> Promise: deletes the stored key and registrations.
 *
 *   tokenward.solve(challenge, bodyBytes, difficulty, signalsHeader?)
 *       -> Promise<{nonce, hashes, solveMs, workers}>   (workers: 0 = solved on main thread)
 *       The proof search alone (exposed for tests and benchmarks). bodyBytes and
 *       signalsHeader may be strings (UTF-8) or bytes. The nonce returned is always the
 *       smallest valid one, whatever the number of workers.
 *
 *   tokenward.collectSignals() -> the page environment as docs/protocol.md §4.1 describes
 *       it (v, wd, ua, uad, gl, scr, vp, tz, tzo, langs, hc, dm, touch, plugins, hl,
 *       input, prev). Extend it: signals: () => ({...tokenward.collectSignals(), x}).
 *
 *   tokenward.lastProof -> {solveMs, difficulty, hashes, route, workers, device, signMs}
 *       of the last proof attached by tokenward.fetch (null before the first one);
 *       device: the id that signed it, or null.
 *   tokenward.version   -> SDK version string; tokenward.protocol -> 1.
 *
 * Device key: an ECDSA P-256 key pair from WebCrypto with a non-extractable private
 * key, stored in IndexedDB (database "tokenward", store "device") of the page's origin.
 * It is registered once per gateway: a challenge for route "/.tokenward/device", solved
 * over the body {"public_key": "<b64url SPKI>"}, POSTed to /.tokenward/device; the
 * answer's id must be b64url(SHA-256(SPKI)[:16]). Each proved request then carries
 *   Tokenward-Device: v1.<id>.<b64url(ECDSA-SHA256 signature, raw r||s)>
 * over utf8("tokenward-device-v1") || 0x00 || utf8(Tokenward-Proof value) || 0x00 ||
 * SHA-256(body), signed after solving (the retry is signed again over its new proof).
 *
 * Speed: the search runs a pure-JS SHA-256 in Web Workers (Blob URL), started when the
 * page is idle. With a CSP that forbids blob: workers it falls back to the main thread
 * in ~12 ms slices. Only the nonce-dependent tail of the message is hashed per nonce.
 *
 * The proof (docs/protocol.md §2):
 *   body_sha    = SHA-256(body bytes)
 *   signals_sha = SHA-256(Tokenward-Signals header value bytes, or empty bytes)
 *   H = SHA-256(utf8(challenge) || 0x00 || body_sha || signals_sha || nonce as u64 BE)
 *   nonce = 0, 1, 2, ... until H has at least `difficulty` leading zero bits.
 */
(function (root) {
  "use strict";

  if (root.tokenward && root.tokenward.protocol === 1) return; // loaded twice: keep the first

  const VERSION = "0.2.0";
  const PROOF_HEADER = "Tokenward-Proof";
  const SIGNALS_HEADER = "Tokenward-Signals";
  const DEVICE_HEADER = "Tokenward-Device";
  const DEVICE_ROUTE = "/.tokenward/device";
  const DEVICE_CONTEXT = "tokenward-device-v1"; // first part of every signed message
  const DB_NAME = "tokenward"; // IndexedDB database (page origin) holding the device key
  const DB_STORE = "device"; // its object store: KEY_RECORD and one "reg:<url>" per gateway
  const KEY_RECORD = "key-v1";
  const DEVICE_RETRY_MS = 60000; // after a failed registration (network, 5xx), try again later
  const STALE_SECONDS = 5; // a prefetched challenge this close to expiry is discarded
  const WORKER_CHUNK = 8192; // nonces per worker task: ~3 ms, one progress message each
  const MAIN_SLICE_MS = 12; // main-thread fallback: work this long, then yield to the page
  const WORKER_START_TIMEOUT_MS = 3000;

  // Set by tokenward.configure(); workers: undefined = min(2, hardwareConcurrency).
  const config = {
    base: "", routes: null, signals: true, workers: undefined,
    device: true, deviceTtlDays: 25, deviceWaitMs: 2000, input: true,
  };

  // Captured at load time so that a page doing `window.fetch = tokenward.fetch` does not
  // make our own challenge requests recurse into the SDK.
  const nativeFetch = root.fetch.bind(root);
  const utf8 = new TextEncoder();

  // ---------------------------------------------------------------------------------
  // The proof-of-work kernel. This function is self-contained on purpose: its source
  // text is also the body of the Web Worker (via a Blob URL), so one implementation runs
  // in workers and on the main-thread fallback. It must not reference outer variables.
  // ---------------------------------------------------------------------------------
  function powKernel() {
    const K = new Int32Array([
      0x428a2f98, 0x71374491, 0xb5c0fbcf, 0xe9b5dba5, 0x3956c25b, 0x59f111f1, 0x923f82a4,
      0xab1c5ed5, 0xd807aa98, 0x12835b01, 0x243185be, 0x550c7dc3, 0x72be5d74, 0x80deb1fe,
      0x9bdc06a7, 0xc19bf174, 0xe49b69c1, 0xefbe4786, 0x0fc19dc6, 0x240ca1cc, 0x2de92c6f,
      0x4a7484aa, 0x5cb0a9dc, 0x76f988da, 0x983e5152, 0xa831c66d, 0xb00327c8, 0xbf597fc7,
      0xc6e00bf3, 0xd5a79147, 0x06ca6351, 0x14292967, 0x27b70a85, 0x2e1b2138, 0x4d2c6dfc,
      0x53380d13, 0x650a7354, 0x766a0abb, 0x81c2c92e, 0x92722c85, 0xa2bfe8a1, 0xa81a664b,
      0xc24b8b70, 0xc76c51a3, 0xd192e819, 0xd6990624, 0xf40e3585, 0x106aa070, 0x19a4c116,
      0x1e376c08, 0x2748774c, 0x34b0bcb5, 0x391c0cb3, 0x4ed8aa4a, 0x5b9cca4f, 0x682e6ff3,
      0x748f82ee, 0x78a5636f, 0x84c87814, 0x8cc70208, 0x90befffa, 0xa4506ceb, 0xbef9a3f7,
      0xc67178f2,
    ]);
    const IV = [
      0x6a09e667, 0xbb67ae85, 0x3c6ef372, 0xa54ff53a, 0x510e527f, 0x9b05688c, 0x1f83d9ab,
      0x5be0cd19,
    ];

    // Expands W[0..15] into the full 64-word message schedule, in place.
    function expand(W) {
      for (let t = 16; t < 64; t++) {
        const x = W[t - 15], y = W[t - 2];
        W[t] = (W[t - 16] + (((x >>> 7) | (x << 25)) ^ ((x >>> 18) | (x << 14)) ^ (x >>> 3)) +
          W[t - 7] + (((y >>> 17) | (y << 15)) ^ ((y >>> 19) | (y << 13)) ^ (y >>> 10))) | 0;
      }
    }

    // Rounds start..end-1 over the schedule W, on the working variables in st (in place).
    // Small separate functions like this one are what V8 optimizes best: one big search
    // function with everything inlined by hand ran at about half the speed.
    function rounds(st, W, start, end) {
      let a = st[0], b = st[1], c = st[2], d = st[3], e = st[4], f = st[5], g = st[6], h = st[7];
      for (let t = start; t < end; t++) {
        const t1 = (h + (((e >>> 6) | (e << 26)) ^ ((e >>> 11) | (e << 21)) ^ ((e >>> 25) | (e << 7))) +
          (g ^ (e & (f ^ g))) + K[t] + W[t]) | 0;
        const t2 = ((((a >>> 2) | (a << 30)) ^ ((a >>> 13) | (a << 19)) ^ ((a >>> 22) | (a << 10))) +
          ((a & b) | (c & (a | b)))) | 0;
        h = g; g = f; f = e; e = (d + t1) | 0; d = c; c = b; b = a; a = (t1 + t2) | 0;
      }
      st[0] = a; st[1] = b; st[2] = c; st[3] = d; st[4] = e; st[5] = f; st[6] = g; st[7] = h;
    }

    // st = state + st, word by word (the feed-forward at the end of a block).
    function addInto(st, state) {
      for (let t = 0; t < 8; t++) st[t] = (st[t] + state[t]) | 0;
    }

    // Big-endian words of bytes[off .. off + 4 * n) into W[0 .. n).
    function loadWords(W, bytes, off, n) {
      for (let t = 0; t < n; t++) {
        const p = off + 4 * t;
        W[t] = (bytes[p] << 24) | (bytes[p + 1] << 16) | (bytes[p + 2] << 8) | bytes[p + 3];
      }
    }

    // SHA-256 padding of a message of `len` bytes whose last `rest` bytes are given:
    // returns the 1 or 2 final blocks (rest || 0x80 || zeros || bit length, big-endian).
    function finalBlocks(rest, len, extra) {
      const used = rest.length + extra; // extra: bytes the caller fills in later (the nonce)
      const total = used + 9 <= 64 ? 64 : 128;
      const tail = new Uint8Array(total);
      tail.set(rest, 0);
      tail[used] = 0x80;
      const bits = len * 8; // < 2^53: split into two exact 32-bit halves
      const hi = Math.floor(bits / 4294967296), lo = bits >>> 0;
      for (let i = 0; i < 4; i++) {
        tail[total - 8 + i] = hi >>> (24 - 8 * i);
        tail[total - 4 + i] = lo >>> (24 - 8 * i);
      }
      return tail;
    }

    // Plain SHA-256 of arbitrary bytes (pages without WebCrypto: insecure contexts).
    function digest(bytes) {
      const full = bytes.length - (bytes.length % 64);
      const state = Int32Array.from(IV);
      const st = new Int32Array(8);
      const W = new Int32Array(64);
      const block = (src, off) => {
        loadWords(W, src, off, 16);
        expand(W);
        st.set(state);
        rounds(st, W, 0, 64);
        addInto(state, st);
      };
      for (let off = 0; off < full; off += 64) block(bytes, off);
      const tail = finalBlocks(bytes.subarray(full), bytes.length, 0);
      for (let off = 0; off < tail.length; off += 64) block(tail, off);
      const out = new Uint8Array(32);
      for (let i = 0; i < 32; i++) out[i] = state[i >> 2] >>> (24 - 8 * (i & 3));
      return out;
    }

    // Precompute everything that does not depend on the nonce. The hashed message is
    // prefix || nonce (8 bytes), with prefix = utf8(challenge) || 0x00 || body_sha ||
    // signals_sha, so:
    //  * the full 64-byte blocks of the prefix are hashed once: the "midstate";
    //  * the rest of the prefix, the nonce and the padding form a 1- or 2-block tail kept
    //    as big-endian words, of which only the 2-3 words holding the nonce change;
    //  * the rounds of the first tail block before the first nonce word are the same for
    //    every nonce: the working variables after them are kept too ("pre");
    //  * a second tail block without nonce bytes has a constant schedule: expanded once.
    // With a 110-character challenge (the gateway's tokens) the prefix is 175 bytes, so a
    // nonce costs one block of 53 rounds instead of three blocks of 64.
    function prepare(prefix, difficulty) {
      const len = prefix.length;
      const full = len - (len % 64);
      const mid = Int32Array.from(IV);
      const st = new Int32Array(8);
      const W = new Int32Array(64), W2 = new Int32Array(64);
      for (let off = 0; off < full; off += 64) {
        loadWords(W, prefix, off, 16);
        expand(W);
        st.set(mid);
        rounds(st, W, 0, 64);
        addInto(mid, st);
      }
      const r = len - full; // prefix bytes in the tail; the nonce starts at tail byte r
      const tail = finalBlocks(prefix.subarray(full), len + 8, 8);
      const two = tail.length === 128;
      loadWords(W, tail, 0, 16);
      if (two) loadWords(W2, tail, 64, 16);
      const k = r >>> 2; // first word holding nonce bytes (0..15)
      const shift = (r & 3) * 8; // bit offset of the nonce inside word k
      const lastNonceWord = shift === 0 ? k + 1 : k + 2; // may be 16 or 17: second block
      const pre = Int32Array.from(mid);
      rounds(pre, W, 0, k);
      const expand2 = two && lastNonceWord >= 16;
      if (two && !expand2) expand(W2);
      return {
        difficulty, mid, pre, k, shift, two, expand2,
        // Prefix or padding bits sharing a word with the nonce (words k and k+2).
        baseK: W[k], baseK2: k + 2 < 16 ? W[k + 2] : W2[k + 2 - 16],
        // Scratch space reused for every nonce (no allocation in the search loop).
        W, W2, st, s2: new Int32Array(8),
      };
    }

    // Leading zero bits of the digest words in h, compared with the difficulty.
    function enoughZeros(h, difficulty) {
      let zeros = 0;
      for (let i = 0; i < 8; i++) {
        if (h[i] !== 0) return zeros + Math.clz32(h[i]) >= difficulty;
        zeros += 32;
      }
      return true;
    }

    function setWord(W, W2, index, value) {
      if (index < 16) W[index] = value; else W2[index - 16] = value;
    }

    // Try nonces start, start+1, ..., start+count-1 (start < 2^53). Returns the first
    // nonce that meets the difficulty, or -1. No allocation happens in the loop.
    function search(job, start, count) {
      const difficulty = job.difficulty;
      if (difficulty <= 0) return start;
      const mid = job.mid, pre = job.pre, W = job.W, W2 = job.W2, st = job.st;
      const k = job.k, shift = job.shift, two = job.two, expand2 = job.expand2;
      const baseK = job.baseK, baseK2 = job.baseK2, inv = 32 - shift;
      const s2 = job.s2; // chaining state between the two tail blocks
      // Cheap filter on the first digest word; the exact count only for candidates.
      const firstShift = difficulty >= 32 ? 0 : 32 - difficulty;
      const firstMustBeZero = difficulty >= 32;
      let hi = Math.floor(start / 4294967296) | 0;
      let lo = start >>> 0;
      for (let i = 0; i < count; i++) {
        // The 8 nonce bytes (big-endian hi:lo) start at bit `shift` of word k.
        if (shift === 0) {
          setWord(W, W2, k, hi);
          setWord(W, W2, k + 1, lo);
        } else {
          setWord(W, W2, k, baseK | (hi >>> shift));
          setWord(W, W2, k + 1, (hi << inv) | (lo >>> shift));
          setWord(W, W2, k + 2, baseK2 | (lo << inv));
        }
        expand(W);
        st.set(pre);
        rounds(st, W, k, 64);
        addInto(st, mid);
        if (two) {
          if (expand2) expand(W2); // else its schedule is constant, expanded in prepare
          s2.set(st);
          rounds(st, W2, 0, 64);
          addInto(st, s2);
        }
        const a = st[0];
        if (firstMustBeZero ? a === 0 : (a >>> firstShift) === 0) {
          if (enoughZeros(st, difficulty)) return start + i;
        }
        lo = (lo + 1) | 0;
        if (lo === 0) hi = (hi + 1) | 0; // carry into the high word past 2^32 nonces
      }
      return -1;
    }

    return { prepare, search, digest };
  }

  // Worker side. A job message names the worker's share of the nonce space: chunks of
  // `chunk` nonces starting at `first`, then every `stride` nonces (worker i of n gets
  // chunks i, i+n, i+2n, ...). One chunk runs per task, and the worker yields between
  // chunks (through a MessageChannel, which unlike setTimeout is not clamped), so a
  // cancel or a newer job is seen within one chunk (a few ms). After each chunk it
  // reports {t:"progress"} or, when the chunk holds a valid nonce, {t:"found"} and stops.
  function workerMain(kernel) {
    let job = null, id = -1, cursor = 0, stride = 0, chunk = 0, scheduled = false;
    const tick = new MessageChannel();
    function schedule() {
      if (!scheduled && job) { scheduled = true; tick.port2.postMessage(0); }
    }
    tick.port1.onmessage = function () {
      scheduled = false;
      if (!job) return;
      const found = kernel.search(job, cursor, chunk);
      if (found >= 0) {
        self.postMessage({ t: "found", id, start: cursor, found, hashes: found - cursor + 1 });
        job = null;
        return;
      }
      self.postMessage({ t: "progress", id, start: cursor, hashes: chunk });
      cursor += stride;
      schedule();
    };
    self.onmessage = function (ev) {
      const m = ev.data;
      if (m.t === "job") {
        id = m.id; job = kernel.prepare(m.prefix, m.difficulty);
        cursor = m.first; stride = m.stride; chunk = m.chunk;
        schedule();
      } else if (m.t === "cancel") {
        if (m.id === id) job = null;
      } else if (m.t === "ping") {
        // A few ms of throwaway work so the JIT has optimized the search loop before the
        // first real proof (typical challenge length: 175-byte prefix, one-block tail).
        kernel.search(kernel.prepare(new Uint8Array(175), 256), 0, 65536);
        self.postMessage({ t: "pong" });
      }
    };
  }

  const kernel = powKernel(); // main-thread instance (fallback solver)

  // ---------------------------------------------------------------------------------
  // Worker pool: a few workers sharing one job, each searching interleaved chunks of
  // the nonce space on its own. The main thread only tracks their progress, and answers
  // once a valid nonce is found and every chunk below it has been searched, so the
  // answer is the smallest valid nonce — the same as a one-worker search.
  // ---------------------------------------------------------------------------------
  let poolPromise = null; // Promise<Worker[] | null>; null = workers unavailable
  let jobCounter = 0;

  // The pool runs one job at a time (each job saturates it anyway): concurrent solves
  // wait for a lease. Foreground solves (requests) go before background ones (device
  // registration), and take the pool from a background solve that is running: it stops
  // after its current chunks and resumes later from the first nonce not yet searched.
  const poolWaiters = []; // {background, grant}, foreground ones first
  let poolHolder = null; // the lease in use

  function acquirePool(background) {
    return new Promise((grant) => {
      const w = { background, grant };
      const firstBackground = background ? -1 : poolWaiters.findIndex((x) => x.background);
      if (firstBackground < 0) poolWaiters.push(w); else poolWaiters.splice(firstBackground, 0, w);
      if (!background && poolHolder && poolHolder.background) {
        poolHolder.yieldWanted = true;
        if (poolHolder.preempt) poolHolder.preempt();
      }
      pumpPool();
    });
  }

  function pumpPool() {
    if (poolHolder || !poolWaiters.length) return;
    const w = poolWaiters.shift();
    let finish;
    const lease = {
      background: w.background, yieldWanted: false, preempt: null,
      done: new Promise((r) => { finish = r; }),
      release() {
        if (poolHolder !== lease) return;
        poolHolder = null;
        finish();
        pumpPool();
      },
    };
    poolHolder = lease;
    w.grant(lease);
  }

  function workerCount() {
    const n = config.workers;
    if (typeof n === "number" && n >= 0) return Math.floor(n);
    const hc = (typeof navigator !== "undefined" && navigator.hardwareConcurrency) || 1;
    return Math.min(2, hc);
  }

  function startPool(n) {
    if (n <= 0 || typeof Worker === "undefined" || typeof Blob === "undefined") {
      return Promise.resolve(null);
    }
    let url;
    try {
      const src = "(" + workerMain.toString() + ")((" + powKernel.toString() + ")());";
      url = URL.createObjectURL(new Blob([src], { type: "text/javascript" }));
    } catch (_) {
      return Promise.resolve(null);
    }
    // A Content-Security-Policy without blob: in worker-src either throws here or fires
    // an error event later, so each worker must answer a ping before it is used.
    const starts = [];
    const workers = [];
    for (let i = 0; i < n; i++) {
      let w;
      try { w = new Worker(url); } catch (_) { break; }
      workers.push(w);
      starts.push(new Promise((resolve) => {
        const timer = setTimeout(() => resolve(false), WORKER_START_TIMEOUT_MS);
        w.onmessage = (ev) => { if (ev.data && ev.data.t === "pong") { clearTimeout(timer); resolve(true); } };
        w.onerror = (ev) => { if (ev && ev.preventDefault) ev.preventDefault(); clearTimeout(timer); resolve(false); };
        w.postMessage({ t: "ping" });
      }));
    }
    return Promise.all(starts).then((ok) => {
      const alive = workers.filter((w, i) => ok[i]);
      workers.forEach((w, i) => { if (!ok[i]) w.terminate(); });
      // The URL is kept: revoking it while a worker is still starting can break the start.
      if (!alive.length) return null;
      return alive;
    });
  }

  function getPool() {
    if (!poolPromise) poolPromise = startPool(workerCount());
    return poolPromise;
  }

  // The next solve starts a new pool; the old workers are terminated once the solves
  // queued before this call are done (terminating a worker mid-job would hang its solve).
  function resetPool() {
    const old = poolPromise;
    poolPromise = null;
    if (!old) return;
    const stop = () => old.then((ws) => { if (ws) ws.forEach((w) => w.terminate()); });
    // Leases taken or asked for before this call (their waiters are granted a lease
    // before any later one), so the holder and the last waiter cover them all.
    const pending = [poolHolder ? poolHolder.done : null];
    if (poolWaiters.length) {
      const last = poolWaiters[poolWaiters.length - 1];
      pending.push(new Promise((resolve) => {
        const grant = last.grant;
        last.grant = (lease) => { grant(lease); lease.done.then(resolve); };
      }));
    }
    Promise.all(pending).then(stop, stop);
  }

  // Searches from nonce `from` (every nonce below it is known not to be valid). A
  // background lease can be preempted: the search then stops and resolves with
  // {preempted: true, from}, `from` being the first nonce not searched yet (every chunk
  // below the lowest chunk a worker has not finished is done).
  function solveInWorkers(workers, prefix, difficulty, from, lease) {
    const id = ++jobCounter;
    const n = workers.length;
    return new Promise((resolve, reject) => {
      let best = Infinity; // smallest valid nonce reported so far
      let hashes = 0;
      let settled = false;
      // Per worker: the start of its first chunk not searched yet (Infinity once it
      // found a nonce and stopped). All nonces below `best` are searched once every
      // worker's next chunk starts at or above it.
      const next = workers.map((_, i) => from + i * WORKER_CHUNK);

      function stop() {
        settled = true;
        lease.preempt = null;
        for (const w of workers) {
          w.postMessage({ t: "cancel", id });
          w.onmessage = null; w.onerror = null;
        }
      }
      function finishIfDone() {
        if (best === Infinity || next.some((start) => start < best)) return;
        stop();
        resolve({ nonce: best, hashes });
      }
      if (lease.background) {
        lease.preempt = () => {
          if (settled) return;
          stop();
          resolve({ preempted: true, from: Math.min(...next), hashes });
        };
        if (lease.yieldWanted) { lease.preempt(); return; }
      }
      workers.forEach((w, i) => {
        w.onmessage = (ev) => {
          const m = ev.data;
          if (settled || !m || m.id !== id) return; // a stale report from an older job
          hashes += m.hashes;
          if (m.t === "found") {
            next[i] = Infinity;
            if (m.found < best) best = m.found;
          } else if (m.t === "progress") {
            next[i] = m.start + n * WORKER_CHUNK;
          }
          finishIfDone();
        };
        w.onerror = (ev) => {
          if (ev && ev.preventDefault) ev.preventDefault();
          if (settled) return;
          settled = true;
          lease.preempt = null;
          reject(new Error("tokenward: proof worker failed"));
        };
        // postMessage gives each worker its own copy of the prefix.
        w.postMessage({
          t: "job", id, prefix, difficulty,
          first: from + i * WORKER_CHUNK, stride: n * WORKER_CHUNK, chunk: WORKER_CHUNK,
        });
      });
    });
  }

  // Main-thread fallback (e.g. a CSP that forbids blob: workers): the same kernel in
  // time slices, yielding with setTimeout so the page keeps painting and handling input.
  function solveOnMainThread(prefix, difficulty, from) {
    const job = kernel.prepare(prefix, difficulty);
    return new Promise((resolve) => {
      let start = from, hashes = 0;
      const step = 2048;
      function slice() {
        const until = performance.now() + MAIN_SLICE_MS;
        do {
          const found = kernel.search(job, start, step);
          if (found >= 0) { resolve({ nonce: found, hashes: hashes + found - start + 1 }); return; }
          hashes += step;
          start += step;
        } while (performance.now() < until);
        setTimeout(slice, 0);
      }
      slice();
    });
  }

  // ---------------------------------------------------------------------------------
  // Proof assembly.
  // ---------------------------------------------------------------------------------
  function toBytes(x) {
    if (x == null) return new Uint8Array(0);
    if (typeof x === "string") return utf8.encode(x);
    if (x instanceof Uint8Array) return x;
    if (x instanceof ArrayBuffer) return new Uint8Array(x);
    if (ArrayBuffer.isView(x)) return new Uint8Array(x.buffer, x.byteOffset, x.byteLength);
    if (Array.isArray(x)) return Uint8Array.from(x);
    throw new TypeError("tokenward: expected a string or bytes");
  }

  // WebCrypto for the one-off hashes (fast, native); it only exists in secure contexts
  // (https, http://localhost), so plain-http pages fall back to the JS implementation.
  async function sha256(bytes) {
    if (typeof crypto !== "undefined" && crypto.subtle) {
      return new Uint8Array(await crypto.subtle.digest("SHA-256", bytes));
    }
    return kernel.digest(bytes);
  }

  function solve(challenge, bodyBytes, difficulty, signalsHeader) {
    return solveWith(challenge, bodyBytes, difficulty, signalsHeader, false);
  }

  // background: yields the workers to foreground solves (device registration).
  async function solveWith(challenge, bodyBytes, difficulty, signalsHeader, background) {
    const t0 = performance.now();
    if (typeof challenge !== "string" || !challenge) throw new TypeError("tokenward: bad challenge");
    difficulty = Math.max(0, Math.floor(Number(difficulty) || 0));
    if (difficulty > 256) throw new RangeError("tokenward: difficulty above 256 bits");
    const ch = utf8.encode(challenge);
    const [bodySha, signalsSha] = await Promise.all([
      sha256(toBytes(bodyBytes)),
      sha256(toBytes(signalsHeader)),
    ]);
    if (difficulty === 0) return { nonce: 0, hashes: 0, solveMs: performance.now() - t0, workers: 0 };
    const prefix = new Uint8Array(ch.length + 1 + 64);
    prefix.set(ch, 0);
    prefix[ch.length] = 0;
    prefix.set(bodySha, ch.length + 1);
    prefix.set(signalsSha, ch.length + 33);
    let result = null;
    let used = 0;
    let from = 0; // nonces below this one are searched already (a preempted background solve)
    let hashes = 0;
    for (;;) {
      const lease = await acquirePool(background);
      let again = false;
      try {
        const workers = await getPool();
        if (workers) {
          try {
            const r = await solveInWorkers(workers, prefix, difficulty, from, lease);
            hashes += r.hashes;
            if (r.preempted) { from = r.from; again = true; } else { result = r; used = workers.length; }
          } catch (_) {
            resetPool();
            config.workers = 0; // a worker crashed: do not try again on this page
          }
        }
      } finally {
        lease.release();
      }
      if (!again) break;
    }
    if (!result) {
      const r = await solveOnMainThread(prefix, difficulty, from);
      result = { nonce: r.nonce };
      hashes += r.hashes;
    }
    // `workers`: how many workers searched (0 = main thread), for diagnostics.
    return { nonce: result.nonce, hashes, solveMs: performance.now() - t0, workers: used };
  }

  // ---------------------------------------------------------------------------------
  // Challenges: one unused challenge per route is kept ready so a request does not
  // wait for the challenge round trip. Each challenge is handed out exactly once.
  // ---------------------------------------------------------------------------------
  const ready = new Map(); // route -> Promise<challenge object | null>
  const unprotected = new Set(); // routes the gateway refused to issue challenges for

  function isChallenge(c) {
    return c && typeof c === "object" && typeof c.challenge === "string" && c.challenge &&
      typeof c.difficulty === "number";
  }

  function fresh(c) {
    return isChallenge(c) && !(typeof c.expires_at === "number" &&
      c.expires_at - Date.now() / 1000 <= STALE_SECONDS);
  }

  function requestChallenge(route) {
    return nativeFetch(config.base + "/.tokenward/challenge", {
      method: "POST",
      headers: { "Content-Type": "application/json" },
      body: JSON.stringify({ route }),
      credentials: "same-origin",
      cache: "no-store",
    }).then((r) => {
      // 400: the gateway does not protect this route (routes: null sends every POST here).
      if (r.status === 400) unprotected.add(route);
      return r.ok ? r.json() : null;
    })
      .then((c) => (isChallenge(c) ? c : null))
      .catch(() => null); // resolved as null: the request then goes without a proof
  }

  function prefetch(route) {
    if (!ready.has(route) && !unprotected.has(route)) ready.set(route, requestChallenge(route));
  }

  async function takeChallenge(route) {
    const pending = ready.get(route);
    ready.delete(route); // single use: nobody else can take this one
    let c = pending ? await pending : null;
    if (!fresh(c) && !unprotected.has(route)) c = await requestChallenge(route);
    prefetch(route); // the next request's challenge, fetched while this one is solved
    return c;
  }

  // ---------------------------------------------------------------------------------
  // Device key (docs/protocol.md §4.2): an ECDSA P-256 key pair made by WebCrypto with a
  // non-extractable private key, kept in IndexedDB (structured clone keeps the CryptoKey
  // objects; the private key's bytes never reach JavaScript), registered once per
  // gateway with a proved POST /.tokenward/device, then used to sign every proved request.
  // Any failure (no IndexedDB or WebCrypto, registration refused) means: no device header.
  // ---------------------------------------------------------------------------------
  let dbPromise = null;
  let deviceGen = 0; // bumped when the gateway changes or the key is forgotten
  let devicePromise = null; // Promise<device | null> for the current generation
  let deviceOff = false; // this page cannot have a device here (no storage/crypto, not offered)
  let deviceRetryAt = 0; // after a transient registration failure
  let deviceRefresh = null; // a re-registration of a stale registration, in the background

  function permanent(reason) {
    const e = new Error("tokenward device: " + reason);
    e.permanent = true;
    return e;
  }

  function idbDone(req) {
    return new Promise((resolve, reject) => {
      req.onsuccess = () => resolve(req.result);
      req.onerror = () => reject(req.error);
    });
  }

  function txDone(tx) {
    return new Promise((resolve, reject) => {
      tx.oncomplete = () => resolve();
      tx.onerror = tx.onabort = () => reject(tx.error || new Error("IndexedDB transaction aborted"));
    });
  }

  function openDb() {
    if (!dbPromise) {
      dbPromise = new Promise((resolve, reject) => {
        const req = root.indexedDB.open(DB_NAME, 1); // throws where storage is blocked
        req.onupgradeneeded = () => req.result.createObjectStore(DB_STORE);
        req.onsuccess = () => {
          const db = req.result;
          db.onversionchange = () => { db.close(); dbPromise = null; };
          resolve(db);
        };
        req.onerror = () => reject(req.error);
      });
      dbPromise.catch(() => { dbPromise = null; });
    }
    return dbPromise;
  }

  async function dbGet(key) {
    const db = await openDb();
    return idbDone(db.transaction(DB_STORE, "readonly").objectStore(DB_STORE).get(key));
  }

  async function dbPut(key, value) {
    const db = await openDb();
    const tx = db.transaction(DB_STORE, "readwrite");
    tx.objectStore(DB_STORE).put(value, key);
    return txDone(tx);
  }

  function validKeyRecord(rec) {
    return !!(rec && rec.v === 1 && typeof rec.id === "string" && typeof rec.spki === "string" &&
      rec.keys && rec.keys.privateKey && typeof CryptoKey !== "undefined" &&
      rec.keys.privateKey instanceof CryptoKey);
  }

  // The page's device key, made on first use. Two tabs making one at the same time agree
  // on whichever was stored first (the check and the write are one transaction).
  async function loadDeviceKey() {
    const stored = await dbGet(KEY_RECORD);
    if (validKeyRecord(stored)) return stored;
    const keys = await crypto.subtle.generateKey({ name: "ECDSA", namedCurve: "P-256" }, false, ["sign", "verify"]);
    const spki = new Uint8Array(await crypto.subtle.exportKey("spki", keys.publicKey));
    const id = b64url((await sha256(spki)).subarray(0, 16));
    const fresh = { v: 1, keys, spki: b64url(spki), id, created: Date.now() };
    const db = await openDb();
    const tx = db.transaction(DB_STORE, "readwrite");
    const store = tx.objectStore(DB_STORE);
    let result = fresh;
    const get = store.get(KEY_RECORD);
    get.onsuccess = () => {
      if (validKeyRecord(get.result)) result = get.result; else store.put(fresh, KEY_RECORD);
    };
    await txDone(tx);
    return result;
  }

  function registrationKey() {
    return "reg:" + new URL(config.base + DEVICE_ROUTE, root.location ? root.location.href : undefined).href;
  }

  function deviceTtlMs() {
    return config.deviceTtlDays * 86400000;
  }

  async function deviceChallenge() {
    const r = await nativeFetch(config.base + "/.tokenward/challenge", {
      method: "POST",
      headers: { "Content-Type": "application/json" },
      body: JSON.stringify({ route: DEVICE_ROUTE }),
      credentials: "same-origin",
      cache: "no-store",
    });
    // 400/404: this gateway (or this version of it) offers no device registration.
    if (r.status === 400 || r.status === 404) throw permanent("registration not offered (" + r.status + ")");
    const c = r.ok ? await r.json() : null;
    if (!isChallenge(c)) throw new Error("tokenward device: no challenge (" + r.status + ")");
    return c;
  }

  // POST /.tokenward/device with a proof over the exact body; once more with the
  // challenge of a 401 (expired, replayed). Records the registration on success.
  async function registerDevice(dev) {
    const t0 = performance.now();
    const body = '{"public_key": "' + dev.spki + '"}';
    let c = await deviceChallenge();
    let hashes = 0;
    for (let attempt = 0; attempt < 2 && c; attempt++) {
      const r = await solveWith(c.challenge, body, c.difficulty, null, true);
      hashes += r.hashes;
      const response = await nativeFetch(config.base + DEVICE_ROUTE, {
        method: "POST",
        headers: { "Content-Type": "application/json", [PROOF_HEADER]: "v1." + c.challenge + "." + r.nonce },
        body,
        credentials: "same-origin",
        cache: "no-store",
      });
      if (response.ok) {
        const j = await response.json().catch(() => null);
        if (!j || j.device !== dev.id) throw permanent("the gateway named the device " + (j && j.device));
        dev.registeredAt = Date.now();
        dev.registration = { ms: performance.now() - t0, hashes, difficulty: c.difficulty };
        try { await dbPut(dev.regKey, { id: dev.id, at: dev.registeredAt }); } catch (_) { /* next load registers again */ }
        return dev;
      }
      if (response.status === 400 || response.status === 404 || response.status === 405) {
        throw permanent("registration refused (" + response.status + ")");
      }
      c = await challengeFrom(response);
    }
    throw new Error("tokenward device: registration failed");
  }

  async function prepareDevice() {
    let rec, regKey, reg;
    try {
      if (!root.crypto || !crypto.subtle || !root.indexedDB) throw new Error("no WebCrypto or IndexedDB");
      rec = await loadDeviceKey();
      regKey = registrationKey();
      reg = await dbGet(regKey);
    } catch (e) {
      throw permanent((e && e.message) || String(e));
    }
    const dev = {
      id: rec.id, privateKey: rec.keys.privateKey, spki: rec.spki, regKey,
      registeredAt: 0, registration: null,
    };
    const now = Date.now();
    if (reg && reg.id === dev.id && typeof reg.at === "number" && reg.at <= now && now - reg.at < deviceTtlMs()) {
      dev.registeredAt = reg.at;
      return dev;
    }
    return registerDevice(dev);
  }

  // Promise<device | null>; never rejects. Starts (or joins) the key's loading and
  // registration for the current gateway.
  function getDevice() {
    if (!config.device || deviceOff) return Promise.resolve(null);
    if (!devicePromise) {
      if (Date.now() < deviceRetryAt) return Promise.resolve(null);
      const gen = deviceGen;
      const p = prepareDevice().catch((e) => {
        if (gen === deviceGen) {
          if (e && e.permanent) deviceOff = true; else deviceRetryAt = Date.now() + DEVICE_RETRY_MS;
          if (devicePromise === p) devicePromise = null;
        }
        return null;
      });
      devicePromise = p;
      return p;
    }
    // A registration older than deviceTtlDays is renewed in the background (the gateway
    // may have dropped the key); meanwhile the same key keeps signing.
    return devicePromise.then((dev) => {
      if (dev && !deviceRefresh && Date.now() - dev.registeredAt >= deviceTtlMs()) {
        const gen = deviceGen;
        deviceRefresh = registerDevice(dev).then(
          () => { if (gen === deviceGen) deviceRefresh = null; },
          () => setTimeout(() => { if (gen === deviceGen) deviceRefresh = null; }, DEVICE_RETRY_MS));
      }
      return dev;
    });
  }

  // Protocol §4.2: an answer with "Tokenward-Device: unknown" means the gateway does not
  // hold this page's key (it never saw it, or forgot it: a restart on the memory store).
  // Register it again in the background, at most once per DEVICE_RETRY_MS.
  let deviceForgottenAt = 0;
  function deviceForgotten(response) {
    if (!response || !response.headers || response.headers.get(DEVICE_HEADER) !== "unknown") return;
    if (!devicePromise || deviceRefresh || Date.now() - deviceForgottenAt < DEVICE_RETRY_MS) return;
    deviceForgottenAt = Date.now();
    const gen = deviceGen;
    deviceRefresh = devicePromise.then((dev) => (dev ? registerDevice(dev) : null)).then(
      () => { if (gen === deviceGen) deviceRefresh = null; },
      () => setTimeout(() => { if (gen === deviceGen) deviceRefresh = null; }, DEVICE_RETRY_MS));
  }

  function resetDevice() {
    deviceGen++;
    devicePromise = null;
    deviceOff = false;
    deviceRetryAt = 0;
    deviceRefresh = null;
  }

  function deviceInfo(dev) {
    return dev ? { id: dev.id, registeredAt: dev.registeredAt, registration: dev.registration } : null;
  }

  // Resolves with p's value, or with null after `ms` milliseconds.
  function within(p, ms) {
    if (!(ms > 0)) return Promise.race([p, Promise.resolve(null)]);
    let timer;
    const late = new Promise((resolve) => { timer = setTimeout(() => resolve(null), ms); });
    return Promise.race([p, late]).finally(() => clearTimeout(timer));
  }

  // utf8("tokenward-device-v1") || 0x00 || utf8(proof header value) || 0x00 || SHA-256(body)
  async function signRequest(dev, proofValue, bodySha) {
    const ctx = utf8.encode(DEVICE_CONTEXT);
    const proof = utf8.encode(proofValue);
    const msg = new Uint8Array(ctx.length + 1 + proof.length + 1 + 32);
    msg.set(ctx, 0);
    msg.set(proof, ctx.length + 1);
    msg.set(bodySha, ctx.length + proof.length + 2);
    const sig = await crypto.subtle.sign({ name: "ECDSA", hash: "SHA-256" }, dev.privateKey, msg);
    return "v1." + dev.id + "." + b64url(new Uint8Array(sig)); // WebCrypto gives raw r||s
  }

  // ---------------------------------------------------------------------------------
  // Input evidence (docs/protocol.md §4.1 `input`): counts of trusted keyboard, paste
  // and focus events in the tracked fields. Counts only: the text is never read, except
  // for its length (pasted text: its length, read inside the paste event).
  // ---------------------------------------------------------------------------------
  const trackers = []; // {owns(node) -> bool, elements() -> Element[]}
  const input = { keys: 0, pastes: 0, pastedChars: 0, focusMs: 0, focusedAt: null, lastLen: 0 };
  let listening = false;
  // Without trackInput (and unless configure({input: false})): every text field is
  // observed, and the prompt is the field the person edited last. A page where nothing
  // was typed or pasted then reports zero counts, which is the evidence.
  let autoField = null;

  function observing() {
    return trackers.length > 0 || config.input !== false;
  }

  function isTextField(node) {
    if (node.isContentEditable) return true;
    if (node.tagName === "TEXTAREA") return true;
    if (node.tagName !== "INPUT") return false;
    const type = (node.getAttribute("type") || "text").toLowerCase();
    return type === "text" || type === "search";
  }

  function eventTarget(e) {
    const path = typeof e.composedPath === "function" ? e.composedPath() : null;
    return path && path.length ? path[0] : e.target;
  }

  function isTracked(node) {
    if (!node || node.nodeType !== 1) return false;
    if (trackers.length) {
      for (const t of trackers) if (t.owns(node)) return true;
      return false;
    }
    return config.input !== false && isTextField(node);
  }

  // The field an edit event went to, remembered as the prompt (automatic observation).
  function edited(node) {
    if (!trackers.length) autoField = node;
  }

  function textLength(el) {
    if (typeof el.value === "string") return el.value.length;
    if (el.isContentEditable) return (el.innerText || "").length;
    return 0;
  }

  // Keys that type or delete text: one character, Backspace/Delete/Enter, and the
  // placeholders of IME composition and virtual keyboards. Shortcuts (Ctrl/Cmd) are not
  // typing, except AltGr (reported as Ctrl+Alt on Windows) which types characters.
  function typesText(e) {
    if (e.metaKey) return false;
    if (e.ctrlKey && !(e.getModifierState && e.getModifierState("AltGraph"))) return false;
    const k = e.key;
    if (typeof k !== "string") return false;
    if (k.length === 1 || (k.length === 2 && k.codePointAt(0) > 0xffff)) return true;
    return k === "Backspace" || k === "Delete" || k === "Enter" || k === "Process" || k === "Unidentified";
  }

  const inputListeners = {
    keydown(e) {
      const el = eventTarget(e);
      if (e.isTrusted && isTracked(el) && typesText(e)) {
        input.keys++;
        edited(el);
      }
    },
    paste(e) {
      const el = eventTarget(e);
      if (!e.isTrusted || !isTracked(el)) return;
      input.pastes++;
      edited(el);
      try { input.pastedChars += e.clipboardData ? e.clipboardData.getData("text").length : 0; } catch (_) { /* */ }
    },
    drop(e) {
      const el = eventTarget(e);
      if (!e.isTrusted || !isTracked(el)) return;
      input.pastes++;
      edited(el);
      try { input.pastedChars += e.dataTransfer ? e.dataTransfer.getData("text").length : 0; } catch (_) { /* */ }
    },
    input(e) {
      const el = eventTarget(e);
      if (isTracked(el)) {
        input.lastLen = textLength(el);
        edited(el); // a script's input event too: the prompt is where the text is
      }
    },
    focusin(e) {
      if (isTracked(eventTarget(e)) && input.focusedAt === null) input.focusedAt = performance.now();
    },
    focusout(e) {
      if (isTracked(eventTarget(e)) && input.focusedAt !== null) {
        input.focusMs += performance.now() - input.focusedAt;
        input.focusedAt = null;
      }
    },
  };

  function listen() {
    if (listening || typeof document === "undefined") return;
    listening = true;
    for (const name of Object.keys(inputListeners)) {
      document.addEventListener(name, inputListeners[name], { capture: true, passive: true });
    }
  }

  function trackInput(target) {
    let tracker;
    if (typeof target === "string") {
      if (typeof document === "undefined") throw new TypeError("tokenward.trackInput: no document");
      document.querySelector(target); // throws a SyntaxError for an invalid selector now
      tracker = {
        owns: (node) => !!(node.closest && node.closest(target)),
        elements: () => Array.from(document.querySelectorAll(target)),
      };
    } else if (target && target.nodeType === 1) {
      tracker = { owns: (node) => target.contains(node), elements: () => [target] };
    } else {
      throw new TypeError("tokenward.trackInput: expected an element or a CSS selector");
    }
    trackers.push(tracker);
    listen();
    const active = typeof document !== "undefined" ? document.activeElement : null;
    if (active && tracker.owns(active) && input.focusedAt === null) input.focusedAt = performance.now();
    return function untrack() {
      const i = trackers.indexOf(tracker);
      if (i >= 0) trackers.splice(i, 1);
    };
  }

  // The counts for the current prompt, or undefined when no field is tracked. `chars` is
  // the fields' current length; an app that empties the field before sending (as chat
  // pages do) gets the length after the last edit instead; unknown (0) is left out, and
  // the gateway then measures the prompt in the request body.
  function inputSnapshot() {
    if (!observing()) return undefined;
    let chars = 0;
    if (trackers.length) {
      for (const t of trackers) for (const el of t.elements()) chars += textLength(el);
    } else if (autoField && autoField.isConnected) {
      chars = textLength(autoField);
    }
    if (!chars) chars = input.lastLen;
    const focus = input.focusMs + (input.focusedAt !== null ? performance.now() - input.focusedAt : 0);
    const out = { keys: input.keys, pastes: input.pastes, pasted_chars: input.pastedChars, focus_ms: Math.round(focus) };
    if (chars > 0) out.chars = chars;
    return out;
  }

  // A new prompt starts once a request has carried the counts.
  function resetInput() {
    input.keys = input.pastes = input.pastedChars = input.focusMs = input.lastLen = 0;
    if (input.focusedAt !== null) input.focusedAt = performance.now();
  }

  // ---------------------------------------------------------------------------------
  // fetch
  // ---------------------------------------------------------------------------------
  function isProtected(method, path) {
    if (method !== "POST") return false;
    return config.routes === null || config.routes.indexOf(path) >= 0;
  }

  function isPlainObject(b) {
    if (b === null || typeof b !== "object") return false;
    if (b instanceof ArrayBuffer || ArrayBuffer.isView(b)) return false;
    if (typeof Blob !== "undefined" && b instanceof Blob) return false;
    if (typeof FormData !== "undefined" && b instanceof FormData) return false;
    if (typeof URLSearchParams !== "undefined" && b instanceof URLSearchParams) return false;
    if (typeof ReadableStream !== "undefined" && b instanceof ReadableStream) return false;
    return true;
  }

  // The exact bytes that will be sent, plus the Content-Type fetch would have added for
  // this kind of body (bytes alone get none, so it must be carried over explicitly).
  async function serializeBody(body) {
    if (body === undefined || body === null) return { bytes: null, type: null };
    if (typeof body === "string") return { bytes: utf8.encode(body), type: "text/plain;charset=UTF-8" };
    if (body instanceof ArrayBuffer) return { bytes: new Uint8Array(body.slice(0)), type: null };
    if (ArrayBuffer.isView(body)) {
      return { bytes: new Uint8Array(body.buffer.slice(body.byteOffset, body.byteOffset + body.byteLength)), type: null };
    }
    if (isPlainObject(body)) {
      throw new TypeError(
        "tokenward.fetch: body is a plain object; pass JSON.stringify(body) " +
        "(fetch would send \"[object Object]\")");
    }
    if (typeof Blob !== "undefined" && body instanceof Blob) {
      return { bytes: new Uint8Array(await body.arrayBuffer()), type: body.type || null };
    }
    // FormData, URLSearchParams, ReadableStream: let the browser encode it exactly as
    // fetch would (multipart boundary included), then send those bytes.
    const r = new Response(body);
    return { bytes: new Uint8Array(await r.arrayBuffer()), type: r.headers.get("content-type") };
  }

  // ---------------------------------------------------------------------------------
  // Built-in environment report (docs/protocol.md §4.1), used with {signals: true}.
  // Every field is read defensively: a missing API leaves its field out.
  // ---------------------------------------------------------------------------------
  let glInfo; // WebGL vendor/renderer: creating a context is slow, so once per page

  function webgl() {
    if (glInfo !== undefined) return glInfo;
    glInfo = null;
    try {
      const gl = document.createElement("canvas").getContext("webgl");
      if (gl) {
        const ext = gl.getExtension("WEBGL_debug_renderer_info");
        glInfo = {
          vendor: String(gl.getParameter(ext ? ext.UNMASKED_VENDOR_WEBGL : gl.VENDOR)),
          renderer: String(gl.getParameter(ext ? ext.UNMASKED_RENDERER_WEBGL : gl.RENDERER)),
        };
        const lose = gl.getExtension("WEBGL_lose_context");
        if (lose) lose.loseContext(); // free the context: browsers cap how many exist
      }
    } catch (_) { /* no WebGL */ }
    return glInfo;
  }

  function collectSignals() {
    const nav = root.navigator || {};
    const out = { v: 1 };
    const put = (key, read) => {
      try { const v = read(); if (v !== undefined) out[key] = v; } catch (_) { /* absent */ }
    };
    put("wd", () => !!nav.webdriver);
    put("ua", () => nav.userAgent);
    put("uad", () => nav.userAgentData ? {
      brands: (nav.userAgentData.brands || []).map((b) => ({ brand: b.brand, version: b.version })),
      mobile: !!nav.userAgentData.mobile,
      platform: String(nav.userAgentData.platform || ""),
    } : undefined);
    put("gl", webgl);
    put("scr", () => [screen.width, screen.height, screen.availWidth, screen.availHeight,
      screen.colorDepth, root.devicePixelRatio]);
    put("vp", () => [root.innerWidth, root.innerHeight, root.outerWidth, root.outerHeight]);
    put("tz", () => Intl.DateTimeFormat().resolvedOptions().timeZone);
    put("tzo", () => new Date().getTimezoneOffset());
    put("langs", () => (nav.languages ? Array.from(nav.languages) : undefined));
    put("hc", () => nav.hardwareConcurrency);
    put("dm", () => nav.deviceMemory);
    put("touch", () => nav.maxTouchPoints);
    put("plugins", () => (nav.plugins ? nav.plugins.length : undefined));
    put("hl", () => {
      const marks = [];
      if (/HeadlessChrome/.test(nav.userAgent || "")) marks.push("ua-headless");
      if (/Chrome\//.test(nav.userAgent || "") && !root.chrome) marks.push("no-window-chrome");
      return marks;
    });
    put("input", inputSnapshot);
    put("prev", () => {
      const p = tokenward.lastProof;
      return p ? { ms: Math.round(p.solveMs), hashes: p.hashes, workers: p.workers, difficulty: p.difficulty }
        : undefined;
    });
    return out;
  }

  function b64url(bytes) {
    let s = "";
    for (let i = 0; i < bytes.length; i += 0x8000) {
      s += String.fromCharCode.apply(null, bytes.subarray(i, i + 0x8000));
    }
    return btoa(s).replace(/\+/g, "-").replace(/\//g, "_").replace(/=+$/, "");
  }

  // 401 bodies carry the fresh challenge at error.challenge in both error shapes.
  async function challengeFrom(response) {
    if (response.status !== 401) return null;
    try {
      const j = await response.clone().json();
      const c = j && j.error && j.error.challenge;
      return isChallenge(c) ? c : null;
    } catch (_) {
      return null;
    }
  }

  async function twFetch(resource, init) {
    init = init || {};
    const isRequest = typeof Request !== "undefined" && resource instanceof Request;
    const method = String(init.method || (isRequest ? resource.method : "GET")).toUpperCase();
    const url = new URL(isRequest ? resource.url : String(resource), root.location ? root.location.href : undefined);
    const route = url.pathname;
    if (!isProtected(method, route)) return nativeFetch(resource, init);

    const deadline = performance.now() + config.deviceWaitMs;
    let body = init.body;
    if (body === undefined && isRequest) body = await resource.clone().arrayBuffer();
    // Encode first: a refused body (plain object) must fail before a challenge is spent.
    const serialized = await serializeBody(body);
    const bytes = serialized.bytes;
    // Started now, so the key loads (and, the first time, registers) while this request
    // gets its challenge and solves; it is awaited only to sign, after solving, and for
    // at most deviceWaitMs from the start of the request.
    const deviceReady = config.device && !unprotected.has(route) ? getDevice() : null;
    const headers = new Headers(init.headers !== undefined ? init.headers : (isRequest ? resource.headers : undefined));
    if (serialized.type && !headers.has("Content-Type")) headers.set("Content-Type", serialized.type);

    // The signals header is fixed once, when the first challenge is in hand (it is
    // hashed into the proof, and a retry must send the same value). A request that goes
    // without a proof carries no signals and leaves the input counts for the next one.
    let signalsValue; // undefined: not built yet; null: none
    async function buildSignals() {
      if (signalsValue !== undefined) return signalsValue;
      signalsValue = null;
      if (!config.signals) return null;
      const obj = config.signals === true ? collectSignals() : await config.signals();
      if (obj !== undefined && obj !== null) {
        signalsValue = b64url(utf8.encode(JSON.stringify(obj)));
        if (obj.input !== undefined && observing()) resetInput();
      }
      return signalsValue;
    }

    let bodySha = null;
    async function sign(proofValue) {
      headers.delete(DEVICE_HEADER);
      if (!deviceReady) return { device: null, signMs: null };
      const dev = await within(deviceReady, deadline - performance.now());
      if (!dev) return { device: null, signMs: null };
      const t0 = performance.now();
      try {
        if (!bodySha) bodySha = await sha256(bytes || new Uint8Array(0));
        headers.set(DEVICE_HEADER, await signRequest(dev, proofValue, bodySha));
        return { device: dev.id, signMs: performance.now() - t0 };
      } catch (_) {
        return { device: null, signMs: null }; // never break the request over its device
      }
    }

    async function prove(c) {
      if (!c) { headers.delete(PROOF_HEADER); headers.delete(DEVICE_HEADER); return; }
      const sv = await buildSignals();
      if (sv) headers.set(SIGNALS_HEADER, sv); else headers.delete(SIGNALS_HEADER);
      const r = await solve(c.challenge, bytes, c.difficulty, sv);
      const proofValue = "v1." + c.challenge + "." + String(r.nonce);
      headers.set(PROOF_HEADER, proofValue);
      const signed = await sign(proofValue); // over the proof value: after solving
      tokenward.lastProof = {
        solveMs: r.solveMs, difficulty: c.difficulty, hashes: r.hashes, route, workers: r.workers,
        device: signed.device, signMs: signed.signMs,
      };
    }
    function send() {
      // The same bytes on a retry: fetch copies the body when the request is created.
      // A Request input keeps its other properties (mode, credentials, ...) because
      // init overrides only what is set here.
      const opts = Object.assign({}, init, { method, headers, body: bytes });
      return nativeFetch(resource, opts);
    }

    // A solve cannot be interrupted, but an aborted request must not be sent after it.
    const checkAbort = () => {
      const signal = init.signal || (isRequest ? resource.signal : null);
      if (signal && signal.aborted) throw signal.reason || new DOMException("Aborted", "AbortError");
    };
    checkAbort();
    await prove(unprotected.has(route) ? null : await takeChallenge(route));
    checkAbort();
    const response = await send();
    deviceForgotten(response);
    const retry = await challengeFrom(response);
    if (!retry) return response;
    if (response.body) response.body.cancel().catch(() => {}); // read via the clone already
    unprotected.delete(route); // it wants a proof after all (e.g. the policy changed)
    await prove(retry);
    checkAbort();
    const again = await send();
    deviceForgotten(again);
    return again;
  }

  function configure(opts) {
    opts = opts || {};
    if ("base" in opts) config.base = String(opts.base || "").replace(/\/+$/, "");
    if ("routes" in opts) {
      if (opts.routes !== null && !Array.isArray(opts.routes)) {
        throw new TypeError("tokenward.configure: routes must be an array of paths or null");
      }
      config.routes = opts.routes === null ? null : opts.routes.map(String);
    }
    if ("signals" in opts) {
      const sig = opts.signals;
      if (sig != null && sig !== false && sig !== true && typeof sig !== "function") {
        throw new TypeError("tokenward.configure: signals must be true, false or a function");
      }
      config.signals = sig || null;
    }
    if ("device" in opts) {
      if (typeof opts.device !== "boolean") throw new TypeError("tokenward.configure: device must be true or false");
      config.device = opts.device;
    }
    if ("deviceTtlDays" in opts) {
      const days = Number(opts.deviceTtlDays);
      if (!(days > 0)) throw new TypeError("tokenward.configure: deviceTtlDays must be a positive number");
      config.deviceTtlDays = days;
    }
    if ("input" in opts) {
      if (typeof opts.input !== "boolean") throw new TypeError("tokenward.configure: input must be true or false");
      config.input = opts.input;
      if (config.input) listen();
    }
    if ("deviceWaitMs" in opts) {
      const ms = Number(opts.deviceWaitMs);
      if (!(ms >= 0)) throw new TypeError("tokenward.configure: deviceWaitMs must be >= 0");
      config.deviceWaitMs = ms;
    }
    if ("workers" in opts && opts.workers !== config.workers) {
      config.workers = opts.workers;
      resetPool();
    }
    if ("base" in opts) { ready.clear(); unprotected.clear(); resetDevice(); } // another gateway
    if (config.routes) config.routes.forEach(prefetch);
    // Register in the background, so that the first request does not wait for it.
    if (config.device && (opts.device === true || (opts.routes && opts.routes.length))) getDevice();
    return tokenward;
  }

  // tokenward.device() -> Promise<{id, registeredAt, registration} | null>
  function device() {
    return getDevice().then(deviceInfo);
  }

  // Deletes this page origin's device key and registrations; the next request makes a new key.
  async function forgetDevice() {
    resetDevice();
    try {
      const db = await openDb();
      const tx = db.transaction(DB_STORE, "readwrite");
      tx.objectStore(DB_STORE).clear();
      await txDone(tx);
    } catch (_) { /* nothing stored */ }
  }

  // Start the workers when the page is idle, so that the first proof does not pay for
  // their start-up (a pool that is never used costs only their memory).
  function warmUp() {
    if (workerCount() > 0) getPool();
    if (config.signals === true) webgl(); // the one slow part of the built-in report
  }
  if (typeof root.requestIdleCallback === "function") {
    root.requestIdleCallback(warmUp, { timeout: 2000 });
  } else {
    setTimeout(warmUp, 200);
  }

  listen(); // automatic input observation (configure({input: false}) turns it off)

  const tokenward = {
    version: VERSION,
    protocol: 1,
    fetch: twFetch,
    configure,
    solve,
    collectSignals,
    trackInput,
    device,
    forgetDevice,
    lastProof: null,
  };
  root.tokenward = tokenward;
})(typeof window !== "undefined" ? window : globalThis);

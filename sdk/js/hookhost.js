// Write hookhost webhook plugins in JavaScript (or TypeScript).
//
// A plugin is an ES module that exports `handler`, made with `defineHandler`:
//
//   import { defineHandler, Info, kv, log } from "../../sdk/js/hookhost.js";
//
//   export const handler = defineHandler({
//     describe: () => new Info("count-kinds", "0.1.0").subscribe("github:*"),
//     handle(event) {
//       const payload = event.json();            // not JSON: Reject
//       const n = kv.increment(`kind/${event.kind}`);
//       log.info("seen", { kind: event.kind, count: n });
//     },
//   });
//
// `jco componentize` (see plugins/build-interpreted.sh) bundles it with this
// module into a component for the `plugin` world of wit/. hookhost calls
// `handle` once per delivery attempt, in a fresh instance each time: keep
// state in `kv`, not in module variables.
//
// What a handler throws decides what happens next: `Retry` asks for another
// attempt later, `Reject` dead-letters the event, a `KvError` becomes
// `Retry` when the store is unavailable and `Reject` otherwise (as in the
// Rust SDK). Anything else is a crash: the instance traps and hookhost
// retries it like `Retry`.

import * as witKv from "hookhost:plugin/kv@0.1.0";
import * as witLog from "hookhost:plugin/log@0.1.0";
import * as witConfig from "hookhost:plugin/config@0.1.0";

/** Base of the two ways a handler fails a delivery. */
export class HandlerError extends Error {}

/** A transient failure: hookhost retries with exponential backoff. */
// componentize-js turns a thrown value into the `err` of a `result` only
// when `payload` is an OWN property (a getter on the class is ignored and
// the throw becomes a trap), hence the assignment in the constructor.
export class Retry extends HandlerError {
  constructor(message) {
    super(message);
    this.payload = { tag: "retry", val: this.message };
  }
}

/** A permanent failure: hookhost dead-letters the event at once. */
export class Reject extends HandlerError {
  constructor(message) {
    super(message);
    this.payload = { tag: "reject", val: this.message };
  }
}

// UTF-8 both ways. StarlingMonkey has TextDecoder/TextEncoder; the QuickJS
// backend (componentize-qjs) has neither, so fall back to plain JS there.
const utf8 =
  typeof TextDecoder === "function"
    ? new TextDecoder("utf-8", { fatal: true })
    : { decode: decodeUtf8 };
const utf8Encoder = typeof TextEncoder === "function" ? new TextEncoder() : { encode: encodeUtf8 };

/** Strict UTF-8 decoding (throws on malformed input, like a fatal
 * TextDecoder); a leading byte-order mark is dropped, as TextDecoder does.
 *
 * Written for QuickJS's interpreter, where a per-byte loop costs over 1,000
 * fuel a byte (a 1 MiB body would exhaust the default budget): the work is
 * left to native built-ins, chunk by chunk. An all-ASCII chunk (found with
 * Math.max) becomes a string with String.fromCharCode; any other chunk goes
 * through escape() + decodeURIComponent(), which decode and validate UTF-8
 * natively (overlong forms, surrogates and truncated sequences throw). About
 * 300 fuel a byte for ASCII, 700 otherwise. */
function decodeUtf8(bytes) {
  const n = bytes.length;
  const CHUNK = 8192;
  let out = "";
  let i = n >= 3 && bytes[0] === 0xef && bytes[1] === 0xbb && bytes[2] === 0xbf ? 3 : 0;
  while (i < n) {
    let end = Math.min(i + CHUNK, n);
    // Never split a multi-byte sequence: end before a continuation byte.
    while (end < n && end > i && (bytes[end] & 0xc0) === 0x80) end--;
    if (end === i) end = Math.min(i + CHUNK, n); // only continuation bytes: invalid anyway
    const chunk = bytes.subarray(i, end);
    const latin1 = String.fromCharCode.apply(null, chunk);
    if (Math.max.apply(null, chunk) < 0x80) {
      out += latin1;
    } else {
      try {
        out += decodeURIComponent(escape(latin1));
      } catch {
        throw new TypeError("invalid UTF-8");
      }
    }
    i = end;
  }
  return out;
}

/** UTF-8 encoding; a lone surrogate becomes U+FFFD, as in TextEncoder. */
function encodeUtf8(str) {
  const out = [];
  for (let i = 0; i < str.length; i++) {
    let cp = str.charCodeAt(i);
    if (cp >= 0xd800 && cp <= 0xdbff && i + 1 < str.length) {
      const lo = str.charCodeAt(i + 1);
      if (lo >= 0xdc00 && lo <= 0xdfff) {
        cp = 0x10000 + ((cp - 0xd800) << 10) + (lo - 0xdc00);
        i++;
      }
    }
    if (cp >= 0xd800 && cp <= 0xdfff) cp = 0xfffd;
    if (cp < 0x80) out.push(cp);
    else if (cp < 0x800) out.push(0xc0 | (cp >> 6), 0x80 | (cp & 0x3f));
    else if (cp < 0x10000) out.push(0xe0 | (cp >> 12), 0x80 | ((cp >> 6) & 0x3f), 0x80 | (cp & 0x3f));
    else out.push(0xf0 | (cp >> 18), 0x80 | ((cp >> 12) & 0x3f), 0x80 | ((cp >> 6) & 0x3f), 0x80 | (cp & 0x3f));
  }
  return new Uint8Array(out);
}

/** One stored webhook, delivered to this plugin. */
export class Event {
  constructor(wit) {
    /** hookhost's id for the event: stable across retries (idempotency). */
    this.id = wit.id;
    /** The source it arrived on (`POST /webhooks/{source}`). */
    this.source = wit.source;
    /** The kind derived from the provider's payload, e.g. `issues.opened`. */
    this.kind = wit.kind;
    /** When hookhost received it, ms since the Unix epoch (a Number). */
    this.receivedAt = Number(wit.receivedAt);
    /** 1 for the first attempt; more after a retry or a replay. */
    this.attempt = wit.attempt;
    /** Request headers that matter for handling, names in lower case. */
    this.headers = wit.headers;
    /** The raw body, byte for byte as the provider sent it. */
    this.body = wit.body;
  }

  /** The body parsed as JSON; throws `Reject` when it is not JSON. */
  json() {
    try {
      return JSON.parse(utf8.decode(this.body));
    } catch (e) {
      throw new Reject(`body is not the expected JSON: ${e.message}`);
    }
  }

  /** The first header with this name (case-insensitive), or undefined. */
  header(name) {
    const wanted = name.toLowerCase();
    const hit = this.headers.find(([n]) => n.toLowerCase() === wanted);
    return hit ? hit[1] : undefined;
  }

  /** The body as UTF-8 text, or undefined when it is not UTF-8. */
  text() {
    try {
      return utf8.decode(this.body);
    } catch {
      return undefined;
    }
  }
}

/** What the plugin declares: name, version and `source:kind` patterns. */
export class Info {
  constructor(name, version, subscriptions = []) {
    this.name = name;
    this.version = version;
    this.subscriptions = [...subscriptions];
  }

  /** Also receive events matching `pattern`; returns this, so calls chain. */
  subscribe(pattern) {
    this.subscriptions.push(pattern);
    return this;
  }
}

/** Why a key-value operation failed: `code` is the WIT case
 * (`invalid-key`, `value-too-large`, `quota-exceeded`, `unavailable`) or
 * `decode` for a stored value of the wrong type. */
export class KvError extends Error {
  constructor(code, message) {
    super(message);
    this.code = code;
  }
}

// An absent `option` is `undefined` under StarlingMonkey but `null` under
// QuickJS: the SDK always answers `undefined`.
function orUndefined(v) {
  return v === null ? undefined : v;
}

function kvCall(f) {
  try {
    return f();
  } catch (e) {
    const p = e && e.payload;
    if (!p || typeof p.tag !== "string") throw e;
    switch (p.tag) {
      case "invalid-key":
        throw new KvError(p.tag, `invalid key: ${p.val}`);
      case "value-too-large":
        throw new KvError(p.tag, `value larger than ${p.val} bytes`);
      case "quota-exceeded":
        throw new KvError(p.tag, `namespace full (${p.val} keys)`);
      default:
        throw new KvError(p.tag, `store unavailable: ${p.val}`);
    }
  }
}

/** The plugin's private, durable key-value store. Keys are strings (at
 * most 512 bytes), values bytes (at most 64 KiB); the typed helpers store
 * text and JSON so operators can read them in the admin API. */
export const kv = {
  /** A key's raw bytes (Uint8Array), or undefined when absent. */
  get: (key) => orUndefined(kvCall(() => witKv.get(key))),
  /** Write a key's raw bytes. */
  set: (key, value) => kvCall(() => witKv.set(key, value)),
  /** Remove a key; true when it existed. */
  delete: (key) => kvCall(() => witKv.delete(key)),
  /** One page of keys starting with `prefix`, strictly after `startAfter`. */
  keysPage: (prefix, startAfter = undefined, limit = 1000) =>
    kvCall(() => witKv.keys(prefix, startAfter, limit)),
  /** Every key starting with `prefix`, fetched page by page. */
  keys(prefix) {
    const all = [];
    for (;;) {
      const page = kv.keysPage(prefix, all.length ? all[all.length - 1] : undefined, 1000);
      all.push(...page);
      if (page.length < 1000) return all;
    }
  },
  /** A key as UTF-8 text, or undefined. */
  getStr(key) {
    const b = kv.get(key);
    if (b === undefined) return undefined;
    try {
      return utf8.decode(b);
    } catch (e) {
      throw new KvError("decode", `stored value has the wrong type: ${e.message}`);
    }
  },
  /** Write a key as UTF-8 text. */
  setStr: (key, value) => kv.set(key, utf8Encoder.encode(value)),
  /** A key as JSON, or undefined. */
  getJson(key) {
    const s = kv.getStr(key);
    if (s === undefined) return undefined;
    try {
      return JSON.parse(s);
    } catch (e) {
      throw new KvError("decode", `stored value has the wrong type: ${e.message}`);
    }
  },
  /** Write a key as JSON. */
  setJson: (key, value) => kv.setStr(key, JSON.stringify(value)),
  /** A counter kept by `increment` (0 when absent). */
  getCounter(key) {
    const s = kv.getStr(key);
    if (s === undefined) return 0;
    if (!/^-?\d+$/.test(s)) throw new KvError("decode", `stored value has the wrong type: ${key} is not a counter`);
    return Number(s);
  },
  /** Add `by` to a decimal counter and return the new value. Not atomic
   * across concurrent deliveries of the same plugin. */
  increment(key, by = 1) {
    const next = kv.getCounter(key) + by;
    kv.setStr(key, String(next));
    return next;
  },
};

function fieldList(fields) {
  return Object.entries(fields).map(([k, v]) => [k, String(v)]);
}

/** Structured logging, kept with each delivery attempt:
 * `log.info("message", { key: value })`. */
export const log = {
  log: (level, message, fields = {}) => witLog.log(level, message, fieldList(fields)),
  trace: (message, fields = {}) => witLog.log("trace", message, fieldList(fields)),
  debug: (message, fields = {}) => witLog.log("debug", message, fieldList(fields)),
  info: (message, fields = {}) => witLog.log("info", message, fieldList(fields)),
  warn: (message, fields = {}) => witLog.log("warn", message, fieldList(fields)),
  error: (message, fields = {}) => witLog.log("error", message, fieldList(fields)),
};

/** Read-only settings the operator granted this plugin. */
export const config = {
  /** A configuration value, or undefined when not set. */
  get: (name) => orUndefined(witConfig.get(name)),
  /** A secret, or undefined when not granted. Never log it. */
  secret: (name) => orUndefined(witConfig.secret(name)),
};

/** Turn `{ describe, handle }` into the plugin's `handler` export. */
export function defineHandler(h) {
  return {
    describe() {
      const info = h.describe();
      return { name: info.name, version: info.version, subscriptions: [...info.subscriptions] };
    },
    handle(event) {
      try {
        h.handle(new Event(event));
      } catch (e) {
        if (e instanceof HandlerError) throw e;
        if (e instanceof KvError) {
          throw e.code === "unavailable" ? new Retry(e.message) : new Reject(e.message);
        }
        // A crash: the instance traps (retried like Retry). Leave the
        // operator one line saying what it was; stderr goes nowhere.
        const frame = e && typeof e.stack === "string" ? e.stack.split("\n").find((l) => l.trim()) : undefined;
        const where = frame ? frame.trim().replace(/^at /, "") : "";
        witLog.log("error", "unhandled exception", [["error", where ? `${e} at ${where}` : String(e)]]);
        throw e;
      }
    },
  };
}

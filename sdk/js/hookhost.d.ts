// Types of the hookhost JavaScript SDK (hookhost.js). The WIT-level types
// jco generates from wit/ are in types/ (regenerate: npm run types).

/// <reference path="./types/plugin.d.ts" />
import type * as wit from "hookhost:plugin/types@0.1.0";

export class HandlerError extends Error {}
/** A transient failure: hookhost retries with exponential backoff. */
export class Retry extends HandlerError {
  readonly payload: wit.ErrorRetry;
}
/** A permanent failure: hookhost dead-letters the event at once. */
export class Reject extends HandlerError {
  readonly payload: wit.ErrorReject;
}

/** One stored webhook, delivered to this plugin. */
export class Event {
  constructor(wit: wit.Event);
  readonly id: string;
  readonly source: string;
  readonly kind: string;
  /** Milliseconds since the Unix epoch. */
  readonly receivedAt: number;
  readonly attempt: number;
  readonly headers: Array<[string, string]>;
  readonly body: Uint8Array;
  /** The body parsed as JSON; throws `Reject` when it is not JSON. */
  json<T = any>(): T;
  header(name: string): string | undefined;
  text(): string | undefined;
}

/** What the plugin declares about itself. */
export class Info {
  constructor(name: string, version: string, subscriptions?: string[]);
  name: string;
  version: string;
  subscriptions: string[];
  subscribe(pattern: string): this;
}

export type KvErrorCode = "invalid-key" | "value-too-large" | "quota-exceeded" | "unavailable" | "decode";
export class KvError extends Error {
  readonly code: KvErrorCode;
}

export const kv: {
  get(key: string): Uint8Array | undefined;
  set(key: string, value: Uint8Array): void;
  delete(key: string): boolean;
  keysPage(prefix: string, startAfter?: string, limit?: number): string[];
  keys(prefix: string): string[];
  getStr(key: string): string | undefined;
  setStr(key: string, value: string): void;
  getJson<T = any>(key: string): T | undefined;
  setJson(key: string, value: unknown): void;
  getCounter(key: string): number;
  increment(key: string, by?: number): number;
};

export type Level = "trace" | "debug" | "info" | "warn" | "error";
type Fields = Record<string, string | number | boolean | bigint>;
export const log: {
  log(level: Level, message: string, fields?: Fields): void;
  trace(message: string, fields?: Fields): void;
  debug(message: string, fields?: Fields): void;
  info(message: string, fields?: Fields): void;
  warn(message: string, fields?: Fields): void;
  error(message: string, fields?: Fields): void;
};

export const config: {
  get(name: string): string | undefined;
  secret(name: string): string | undefined;
};

export interface Handler {
  describe(): Info;
  handle(event: Event): void;
}

/** Turn a handler into the plugin's `handler` export. */
export function defineHandler(h: Handler): {
  describe(): wit.Info;
  handle(event: wit.Event): void;
};

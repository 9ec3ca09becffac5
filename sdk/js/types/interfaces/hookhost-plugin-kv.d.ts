declare module 'hookhost:plugin/kv@0.1.0' {
  /**
   * Read a key. `none` when it does not exist.
   */
  export function get(key: string): Uint8Array | undefined;
  /**
   * Write a key, replacing any earlier value.
   */
  export function set(key: string, value: Uint8Array): void;
  /**
   * Remove a key. Returns whether it existed.
   */
  export { _delete as delete };
  function _delete(key: string): boolean;
  /**
   * List keys that start with `prefix`, in byte order, strictly after
   * `start-after` when given, at most `limit` of them (the host caps
   * `limit` at 1,000). Page by passing the last key back as `start-after`.
   */
  export function keys(prefix: string, startAfter: string | undefined, limit: number): Array<string>;
  /**
   * Why a key-value operation failed.
   */
  export type KvError = KvErrorInvalidKey | KvErrorValueTooLarge | KvErrorQuotaExceeded | KvErrorUnavailable;
  /**
   * The key is empty or longer than 512 bytes.
   */
  export interface KvErrorInvalidKey {
    tag: 'invalid-key',
    val: string,
  }
  /**
   * The value is larger than the per-value cap.
   */
  export interface KvErrorValueTooLarge {
    tag: 'value-too-large',
    val: bigint,
  }
  /**
   * The namespace already holds the maximum number of keys.
   */
  export interface KvErrorQuotaExceeded {
    tag: 'quota-exceeded',
    val: bigint,
  }
  /**
   * The store failed; the delivery may be retried.
   */
  export interface KvErrorUnavailable {
    tag: 'unavailable',
    val: string,
  }
}

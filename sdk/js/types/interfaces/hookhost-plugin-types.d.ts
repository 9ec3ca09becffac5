declare module 'hookhost:plugin/types@0.1.0' {
  /**
   * One stored webhook, as handed to a plugin.
   */
  export interface Event {
    /**
     * hookhost's id for this event: unique across sources, stable across
     * retries. Use it to make a handler idempotent.
     */
    id: string,
    /**
     * The source it arrived on: the `{source}` in `POST /webhooks/{source}`.
     */
    source: string,
    /**
     * The event kind derived by the source's scheme, e.g.
     * `issues.opened` (GitHub) or `invoice.paid` (Stripe).
     */
    kind: string,
    /**
     * When hookhost received it, in milliseconds since the Unix epoch.
     */
    receivedAt: bigint,
    /**
     * Which delivery attempt this is, starting at 1. Greater than 1 means
     * an earlier attempt failed (retry, trap or timeout), or the event
     * was replayed.
     */
    attempt: number,
    /**
     * The request headers that matter for handling (names lower-case).
     * Signature headers are included; they were already verified.
     */
    headers: Array<[string, string]>,
    /**
     * The raw request body, byte for byte as the provider sent it.
     * Often JSON, but not always: do not assume UTF-8.
     */
    body: Uint8Array,
  }
  /**
   * Why a delivery did not succeed. The variant decides what happens next.
   */
  export type Error = ErrorRetry | ErrorReject;
  /**
   * Transient failure (a dependency is down, a lock is held): hookhost
   * tries again later with exponential backoff, and dead-letters the
   * event once the operator's attempt limit is reached.
   */
  export interface ErrorRetry {
    tag: 'retry',
    val: string,
  }
  /**
   * Permanent failure (the payload can never be handled): the delivery
   * is dead-lettered at once. An operator may replay it later.
   */
  export interface ErrorReject {
    tag: 'reject',
    val: string,
  }
  /**
   * What a plugin says about itself. Read once when the plugin loads.
   */
  export interface Info {
    /**
     * The plugin's own name for itself (shown as `declared_name`; the
     * operator's file name stays the plugin's identity).
     */
    name: string,
    /**
     * The plugin's own version string (shown as `declared_version`).
     */
    version: string,
    /**
     * Which events to receive, as `source:kind` patterns where `*`
     * matches any run of characters: `*` (everything), `github:*`,
     * `stripe:invoice.*`. The operator may replace this list.
     */
    subscriptions: Array<string>,
  }
}

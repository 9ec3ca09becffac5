declare module 'hookhost:plugin/config@0.1.0' {
  /**
   * A plain configuration value, or `none` when not set.
   */
  export function get(name: string): string | undefined;
  /**
   * A secret (API key, token), or `none` when not granted. Never log it.
   */
  export function secret(name: string): string | undefined;
}

declare module 'hookhost:plugin/log@0.1.0' {
  /**
   * Write one log line with optional key-value fields.
   */
  export function log(level: Level, message: string, fields: Array<[string, string]>): void;
  /**
   * Severity of a log line.
   * # Variants
   * 
   * ## `"trace"`
   * 
   * ## `"debug"`
   * 
   * ## `"info"`
   * 
   * ## `"warn"`
   * 
   * ## `"error"`
   */
  export type Level = 'trace' | 'debug' | 'info' | 'warn' | 'error';
}

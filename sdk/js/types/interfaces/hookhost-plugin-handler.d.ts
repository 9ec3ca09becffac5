/// <reference path="./hookhost-plugin-types.d.ts" />
declare module 'hookhost:plugin/handler@0.1.0' {
  /**
   * Describe the plugin: name, version and subscriptions. Called once at
   * load; it must not depend on the key-value store or the clock.
   */
  export function describe(): Info;
  /**
   * Handle one delivery of one event. Return `ok` when done; an error says
   * whether to try again. A trap (panic, fuel or time or memory exhausted)
   * counts as a transient failure and is retried.
   */
  export function handle(event: Event): void;
  export type Event = import('hookhost:plugin/types@0.1.0').Event;
  export type Error = import('hookhost:plugin/types@0.1.0').Error;
  export type Info = import('hookhost:plugin/types@0.1.0').Info;
}

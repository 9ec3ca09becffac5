/// <reference path="./interfaces/hookhost-plugin-config.d.ts" />
/// <reference path="./interfaces/hookhost-plugin-handler.d.ts" />
/// <reference path="./interfaces/hookhost-plugin-kv.d.ts" />
/// <reference path="./interfaces/hookhost-plugin-log.d.ts" />
/// <reference path="./interfaces/hookhost-plugin-types.d.ts" />
declare module 'hookhost:plugin/plugin@0.1.0' {
  export type * as HookhostPluginConfig010 from 'hookhost:plugin/config@0.1.0'; // import hookhost:plugin/config@0.1.0
  export type * as HookhostPluginKv010 from 'hookhost:plugin/kv@0.1.0'; // import hookhost:plugin/kv@0.1.0
  export type * as HookhostPluginLog010 from 'hookhost:plugin/log@0.1.0'; // import hookhost:plugin/log@0.1.0
  export type * as HookhostPluginTypes010 from 'hookhost:plugin/types@0.1.0'; // import hookhost:plugin/types@0.1.0
  export * as handler from 'hookhost:plugin/handler@0.1.0'; // export hookhost:plugin/handler@0.1.0
}

// `echo` in JavaScript: subscribes to every event, logs it, and counts events
// per kind in its key-value store (`count/<source>:<kind>`), exactly like
// plugins/echo.

import { defineHandler, Info, kv, log } from "../../sdk/js/hookhost.js";

export const handler = defineHandler({
  describe: () => new Info("echo", "0.1.0").subscribe("*"),

  handle(event) {
    const count = kv.increment(`count/${event.source}:${event.kind}`);
    log.info("received event", {
      source: event.source,
      kind: event.kind,
      bytes: event.body.length,
      count,
    });
  },
});

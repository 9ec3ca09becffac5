// `flaky` in JavaScript, a test fixture exactly like plugins/flaky: fails
// until attempt `succeed_at` (config, default 3), then succeeds and counts it
// in the key-value store (`succeeded`). It fails by throwing `Retry`, or, with
// `fail_with = "exception"`, by throwing a plain `Error` that nothing catches:
// the SDK logs it and the instance traps.

import { config, defineHandler, Info, kv, log, Retry } from "../../sdk/js/hookhost.js";

export const handler = defineHandler({
  describe: () => new Info("flaky", "0.1.0").subscribe("*"),

  handle(event) {
    const parsed = Number.parseInt(config.get("succeed_at") ?? "3", 10);
    const succeedAt = Number.isNaN(parsed) ? 3 : parsed;

    if (event.attempt < succeedAt) {
      log.info("failing on purpose", { attempt: event.attempt, succeed_at: succeedAt });
      const message = `flaky: attempt ${event.attempt} of ${succeedAt}`;
      if (config.get("fail_with") === "exception") throw new Error(message);
      throw new Retry(message);
    }

    kv.increment("succeeded");
    log.info("succeeded", { attempt: event.attempt });
  },
});

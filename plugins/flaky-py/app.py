"""`flaky` in Python, a test fixture exactly like plugins/flaky: fails until
attempt `succeed_at` (config, default 3), then succeeds and counts it in the
key-value store (`succeeded`). It fails by raising ``Retry``, or, with
``fail_with = "exception"``, by raising a plain ``ValueError`` that nothing
catches: the SDK logs it and the instance traps."""

import hookhost
from hookhost import config, kv, log


class Flaky(hookhost.Handler):
    def describe(self):
        return hookhost.Info("flaky", "0.1.0").subscribe("*")

    def handle(self, event):
        try:
            succeed_at = int(config.get("succeed_at") or "3")
        except ValueError:
            succeed_at = 3

        if event.attempt < succeed_at:
            log.info("failing on purpose", attempt=event.attempt, succeed_at=succeed_at)
            message = f"flaky: attempt {event.attempt} of {succeed_at}"
            if config.get("fail_with") == "exception":
                raise ValueError(message)
            raise hookhost.Retry(message)

        kv.increment("succeeded")
        log.info("succeeded", attempt=event.attempt)


Handler = hookhost.export(Flaky)

"""`echo` in Python: subscribes to every event, logs it, and counts events
per kind in its key-value store (`count/<source>:<kind>`), exactly like
plugins/echo."""

import hookhost
from hookhost import kv, log


class Echo(hookhost.Handler):
    def describe(self):
        return hookhost.Info("echo", "0.1.0").subscribe("*")

    def handle(self, event):
        count = kv.increment(f"count/{event.source}:{event.kind}")
        log.info(
            "received event",
            source=event.source,
            kind=event.kind,
            bytes=len(event.body),
            count=count,
        )


Handler = hookhost.export(Echo)

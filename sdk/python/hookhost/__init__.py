"""Write hookhost webhook plugins in Python.

A plugin is a module that defines a handler class and exports it::

    import hookhost
    from hookhost import kv, log

    class CountKinds(hookhost.Handler):
        def describe(self):
            return hookhost.Info("count-kinds", "0.1.0").subscribe("github:*")

        def handle(self, event):
            payload = event.json()          # not JSON: Reject
            n = kv.increment(f"kind/{event.kind}")
            log.info("seen", kind=event.kind, count=n)

    Handler = hookhost.export(CountKinds)

``componentize-py`` builds it (see ``plugins/build-interpreted.sh``) into a
component for the ``plugin`` world of ``wit/``. hookhost calls ``handle``
once per delivery attempt, in a fresh instance each time: keep state in
``kv``, not in globals.

What a handler raises decides what happens next: ``Retry`` asks for another
attempt later, ``Reject`` dead-letters the event, a ``kv.KvError`` becomes
``Retry`` when the store is unavailable and ``Reject`` otherwise (as in the
Rust SDK). Any other exception is a crash: the instance traps and hookhost
retries it like ``Retry``.
"""

from ._event import Error, Event, Info, Reject, Retry
from ._export import Handler, export
from . import config, kv, log

__all__ = [
    "Error",
    "Event",
    "Handler",
    "Info",
    "Reject",
    "Retry",
    "config",
    "export",
    "kv",
    "log",
]

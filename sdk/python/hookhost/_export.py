"""Glue between a plugin's handler class and the generated WIT export."""

from componentize_py_types import Err
from wit_world.imports import types as _wit

from ._event import Event, Info, Reject, Retry
from . import log as _log
from .kv import KvError, KvUnavailable


class Handler:
    """Base class of a plugin's handler: override ``describe`` and
    ``handle``. There is no state worth keeping on ``self``: every call
    runs in a fresh instance."""

    def describe(self) -> Info:
        """Name, version and subscriptions; called once at load."""
        raise NotImplementedError

    def handle(self, event: Event) -> None:
        """Handle one delivery attempt of one event; raise ``Retry`` or
        ``Reject`` to fail it."""
        raise NotImplementedError


def export(handler_class):
    """Wrap a ``Handler`` subclass as the plugin's export. Assign the result
    to a module-level name ``Handler``: componentize-py looks it up there."""

    class _Export:
        def describe(self) -> _wit.Info:
            info = handler_class().describe()
            return _wit.Info(info.name, info.version, list(info.subscriptions))

        def handle(self, event: _wit.Event) -> None:
            ev = Event(
                event.id,
                event.source,
                event.kind,
                event.received_at,
                event.attempt,
                event.headers,
                event.body,
            )
            try:
                handler_class().handle(ev)
            except Retry as e:
                raise Err(_wit.Error_Retry(e.message))
            except Reject as e:
                raise Err(_wit.Error_Reject(e.message))
            except KvUnavailable as e:
                raise Err(_wit.Error_Retry(str(e)))
            except KvError as e:
                raise Err(_wit.Error_Reject(str(e)))
            except BaseException as e:
                # A crash: the instance traps (retried like Retry). The
                # traceback goes to stderr, which goes nowhere, so leave the
                # operator one line saying what it was.
                _log.error("unhandled exception", error=f"{type(e).__name__}: {e}")
                raise

    _Export.__name__ = handler_class.__name__
    return _Export

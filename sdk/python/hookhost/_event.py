"""The event a handler receives, the errors it raises and the info it
declares: plain Python types in front of the generated WIT types."""

import json as _json
from dataclasses import dataclass, field
from typing import Any, List, Optional, Tuple


class Error(Exception):
    """Why a delivery failed; raise a subclass, ``Retry`` or ``Reject``."""

    def __init__(self, message: str):
        super().__init__(message)
        self.message = message


class Retry(Error):
    """A transient failure: hookhost retries with exponential backoff."""


class Reject(Error):
    """A permanent failure: hookhost dead-letters the event at once."""


@dataclass
class Event:
    """One stored webhook, delivered to this plugin."""

    #: hookhost's id for the event: stable across retries (idempotency).
    id: str
    #: The source it arrived on (``POST /webhooks/{source}``).
    source: str
    #: The kind derived from the provider's payload, e.g. ``issues.opened``.
    kind: str
    #: When hookhost received it, in milliseconds since the Unix epoch.
    received_at: int
    #: 1 for the first attempt; more after a retry or a replay.
    attempt: int
    #: Request headers that matter for handling, names in lower case.
    headers: List[Tuple[str, str]]
    #: The raw body, byte for byte as the provider sent it.
    body: bytes

    def json(self) -> Any:
        """The body parsed as JSON. A body that does not parse can never be
        handled, so this raises ``Reject``."""
        try:
            return _json.loads(self.body)
        except ValueError as e:  # JSONDecodeError and UnicodeDecodeError
            raise Reject(f"body is not the expected JSON: {e}") from None

    def header(self, name: str) -> Optional[str]:
        """The first header with this name (case-insensitive)."""
        wanted = name.lower()
        for n, v in self.headers:
            if n.lower() == wanted:
                return v
        return None

    def text(self) -> Optional[str]:
        """The body as UTF-8 text, or ``None`` when it is not UTF-8."""
        try:
            return self.body.decode("utf-8")
        except UnicodeDecodeError:
            return None


@dataclass
class Info:
    """What the plugin declares about itself: name, version and the events
    it wants (``source:kind`` patterns with ``*`` wildcards)."""

    name: str
    version: str
    subscriptions: List[str] = field(default_factory=list)

    def subscribe(self, pattern: str) -> "Info":
        """Also receive events matching ``pattern``; returns ``self`` so
        calls chain."""
        self.subscriptions.append(pattern)
        return self

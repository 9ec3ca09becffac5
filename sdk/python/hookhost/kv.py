"""The plugin's private, durable key-value store.

Keys are strings (at most 512 bytes), values bytes (at most 64 KiB). The
typed helpers store text and JSON so operators can read them through the
admin API. Every operation is a host call; there is no cache in between.
A failed operation raises a ``KvError`` subclass; left uncaught it fails the
delivery as ``Retry`` (store unavailable) or ``Reject`` (anything else)."""

import json as _json
from typing import Any, List, Optional

from componentize_py_types import Err
from wit_world.imports import kv as _wit


class KvError(Exception):
    """Why a key-value operation failed."""


class KvInvalidKey(KvError):
    """The key is empty or too long."""


class KvValueTooLarge(KvError):
    """The value is larger than the cap (``args[0]``: the cap in bytes)."""


class KvQuotaExceeded(KvError):
    """The namespace is full (``args[0]``: the key limit)."""


class KvUnavailable(KvError):
    """The host's store failed; worth retrying."""


class KvDecode(KvError):
    """A stored value was not of the type asked for."""


def _raise(err: Err) -> None:
    v = err.value
    if isinstance(v, _wit.KvError_InvalidKey):
        raise KvInvalidKey(f"invalid key: {v.value}") from None
    if isinstance(v, _wit.KvError_ValueTooLarge):
        raise KvValueTooLarge(f"value larger than {v.value} bytes") from None
    if isinstance(v, _wit.KvError_QuotaExceeded):
        raise KvQuotaExceeded(f"namespace full ({v.value} keys)") from None
    raise KvUnavailable(f"store unavailable: {getattr(v, 'value', v)}") from None


def get(key: str) -> Optional[bytes]:
    """A key's raw bytes, or ``None`` when absent."""
    try:
        return _wit.get(key)
    except Err as e:
        _raise(e)


def set(key: str, value: bytes) -> None:
    """Write a key's raw bytes."""
    try:
        _wit.set(key, value)
    except Err as e:
        _raise(e)


def delete(key: str) -> bool:
    """Remove a key; ``True`` when it existed."""
    try:
        return _wit.delete(key)
    except Err as e:
        _raise(e)


def keys_page(prefix: str, start_after: Optional[str] = None, limit: int = 1000) -> List[str]:
    """One page of keys starting with ``prefix``, strictly after
    ``start_after``."""
    try:
        return _wit.keys(prefix, start_after, limit)
    except Err as e:
        _raise(e)


def keys(prefix: str) -> List[str]:
    """Every key starting with ``prefix``, fetched page by page."""
    page_size = 1000
    out: List[str] = []
    while True:
        page = keys_page(prefix, out[-1] if out else None, page_size)
        out.extend(page)
        if len(page) < page_size:
            return out


def get_str(key: str) -> Optional[str]:
    """A key as UTF-8 text."""
    b = get(key)
    if b is None:
        return None
    try:
        return b.decode("utf-8")
    except UnicodeDecodeError as e:
        raise KvDecode(f"stored value has the wrong type: {e}") from None


def set_str(key: str, value: str) -> None:
    """Write a key as UTF-8 text."""
    set(key, value.encode("utf-8"))


def get_json(key: str) -> Any:
    """A key as JSON (``None`` when absent)."""
    b = get(key)
    if b is None:
        return None
    try:
        return _json.loads(b)
    except ValueError as e:
        raise KvDecode(f"stored value has the wrong type: {e}") from None


def set_json(key: str, value: Any) -> None:
    """Write a key as compact JSON."""
    set(key, _json.dumps(value, separators=(",", ":")).encode("utf-8"))


def get_counter(key: str) -> int:
    """A counter kept by ``increment`` (0 when absent)."""
    s = get_str(key)
    if s is None:
        return 0
    try:
        return int(s)
    except ValueError:
        raise KvDecode(f"stored value has the wrong type: {key} is not a counter") from None


def increment(key: str, by: int = 1) -> int:
    """Add ``by`` to a decimal counter and return the new value.

    Not atomic across concurrent deliveries of the same plugin: use it for
    statistics, or enable per-key ordering for exact counts."""
    n = get_counter(key) + by
    set_str(key, str(n))
    return n

"""Structured logging into hookhost's log, kept with each delivery attempt.

``log.info("message", key=value, ...)``: fields are keyword arguments,
converted with ``str``. The host caps line length and lines per call."""

from wit_world.imports import log as _wit

Level = _wit.Level


def log(level: "_wit.Level", message: str, **fields) -> None:
    """Write one line at ``level`` with key-value fields."""
    _wit.log(level, message, [(k, str(v)) for k, v in fields.items()])


def trace(message: str, **fields) -> None:
    """A trace line."""
    log(Level.TRACE, message, **fields)


def debug(message: str, **fields) -> None:
    """A debug line."""
    log(Level.DEBUG, message, **fields)


def info(message: str, **fields) -> None:
    """An info line."""
    log(Level.INFO, message, **fields)


def warn(message: str, **fields) -> None:
    """A warning."""
    log(Level.WARN, message, **fields)


def error(message: str, **fields) -> None:
    """An error line."""
    log(Level.ERROR, message, **fields)

"""Read-only settings the operator granted this plugin
(``[plugin.NAME] config = {...}``, ``secrets = {...}`` in hookhost's config)."""

from typing import Optional

from wit_world.imports import config as _wit


def get(name: str) -> Optional[str]:
    """A configuration value, or ``None`` when the operator did not set it."""
    return _wit.get(name)


def secret(name: str) -> Optional[str]:
    """A secret, or ``None`` when not granted. Never log it."""
    return _wit.secret(name)

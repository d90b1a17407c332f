"""Looks providers up by name. Real providers register here as they are added."""

from __future__ import annotations

from functools import cache

from generation.providers.base import Provider
from generation.providers.local import LocalProvider

_FACTORIES = {
    "local": LocalProvider,
}


def provider_names() -> tuple[str, ...]:
    return tuple(_FACTORIES)


@cache
def get_provider(name: str) -> Provider:
    try:
        return _FACTORIES[name]()
    except KeyError:
        raise LookupError(f"Unknown provider {name!r}.") from None

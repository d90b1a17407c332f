"""Looks providers up by name. What each offers is in generation/providers/catalog.py.

Providers are imported when first used, so a process that never calls OpenAI never imports its SDK.
"""

from __future__ import annotations

from functools import cache
from importlib import import_module

from generation.providers.base import Provider
from generation.providers.catalog import PROVIDERS

# name -> "module:Class"
_FACTORIES = {
    "local": "generation.providers.local:LocalProvider",
    "openai": "generation.providers.openai_images:OpenAIProvider",
    "gemini": "generation.providers.google:GeminiProvider",
    "vertex": "generation.providers.google:VertexProvider",
}
assert set(_FACTORIES) == set(PROVIDERS), "every provider of the catalog needs a factory"


def provider_names() -> tuple[str, ...]:
    return tuple(_FACTORIES)


@cache
def get_provider(name: str) -> Provider:
    try:
        module_name, class_name = _FACTORIES[name].split(":")
    except KeyError:
        raise LookupError(f"Unknown provider {name!r}.") from None
    factory = getattr(import_module(module_name), class_name)
    provider: Provider = factory()
    return provider

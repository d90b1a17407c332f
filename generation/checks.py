"""Start-up checks of settings that name things only the model registry knows."""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.core.checks import Error, register

from generation.providers.catalog import PROVIDERS


@register()
def provider_limits_name_known_models(**_: Any) -> list[Error]:
    """A misspelled provider or model in PROVIDER_LIMITS would limit nothing, silently."""
    errors = []
    for provider, model in settings.PROVIDER_LIMITS:
        spec = PROVIDERS.get(provider)
        if spec is None:
            errors.append(
                Error(
                    f"PROVIDER_LIMITS names the provider {provider!r}, which Atelier does not have.",
                    hint=f"Providers: {', '.join(sorted(PROVIDERS))}.",
                    id="generation.E001",
                )
            )
        elif model and model not in {model_spec.id for model_spec in spec.models}:
            errors.append(
                Error(
                    f"PROVIDER_LIMITS names the model {model!r} of {provider}, which Atelier does not offer.",
                    hint=f"Models of {provider}: {', '.join(sorted(m.id for m in spec.models))}.",
                    id="generation.E002",
                )
            )
    return errors

"""Strict readers for environment variables.

A variable that is set but malformed is an error naming the variable, never a silent default:
a typo in production configuration must stop the process at start, not change its behaviour.
"""

from __future__ import annotations

import ipaddress
import os

from django.core.exceptions import ImproperlyConfigured

_TRUE = {"true", "1", "yes", "on"}
_FALSE = {"false", "0", "no", "off"}


def _raw(name: str) -> str | None:
    value = os.environ.get(name)
    if value is None or value.strip() == "":
        return None
    return value.strip()


def env_str(name: str, default: str | None = None, *, required: bool = False) -> str:
    value = _raw(name)
    if value is None:
        if required or default is None:
            raise ImproperlyConfigured(f"Environment variable {name} must be set.")
        return default
    return value


def env_bool(name: str, default: bool) -> bool:
    value = _raw(name)
    if value is None:
        return default
    lowered = value.lower()
    if lowered in _TRUE:
        return True
    if lowered in _FALSE:
        return False
    raise ImproperlyConfigured(f"Environment variable {name} must be true or false, not {value!r}.")


def env_int(name: str, default: int, *, minimum: int | None = None) -> int:
    value = _raw(name)
    if value is None:
        return default
    try:
        number = int(value)
    except ValueError:
        raise ImproperlyConfigured(f"Environment variable {name} must be a whole number, not {value!r}.") from None
    if minimum is not None and number < minimum:
        raise ImproperlyConfigured(f"Environment variable {name} must be at least {minimum}.")
    return number


def env_float(name: str, default: float, *, minimum: float | None = None, maximum: float | None = None) -> float:
    value = _raw(name)
    if value is None:
        return default
    try:
        number = float(value)
    except ValueError:
        raise ImproperlyConfigured(f"Environment variable {name} must be a number, not {value!r}.") from None
    if (minimum is not None and number < minimum) or (maximum is not None and number > maximum):
        raise ImproperlyConfigured(
            f"Environment variable {name} must be between {minimum} and {maximum}, not {number}."
        )
    return number


def env_list(name: str, default: list[str]) -> list[str]:
    value = _raw(name)
    if value is None:
        return default
    return [item.strip() for item in value.split(",") if item.strip()]


def env_choice(name: str, default: str, choices: set[str]) -> str:
    value = _raw(name)
    if value is None:
        return default
    if value not in choices:
        raise ImproperlyConfigured(
            f"Environment variable {name} must be one of {', '.join(sorted(choices))}, not {value!r}."
        )
    return value


# The periods DRF's throttles understand; they read only the first letter, so "5/mango" would
# silently mean a minute. Only these spellings are accepted.
_RATE_PERIODS = ("s", "sec", "second", "m", "min", "minute", "h", "hour", "d", "day")


def env_rate(name: str, default: str) -> str:
    """A request rate as DRF's throttles read it: `<requests>/<period>`, such as 30/min or 1000/day."""
    value = _raw(name) or default
    count, _, period = value.partition("/")
    if not (count.isascii() and count.isdigit() and int(count) >= 1 and period in _RATE_PERIODS):
        raise ImproperlyConfigured(
            f"Environment variable {name} must read like 30/min (a number, then one of"
            f" {', '.join(_RATE_PERIODS)}), not {value!r}."
        )
    return value


def env_provider_limits(name: str, default: str) -> dict[tuple[str, str], tuple[float | None, int | None]]:
    """Provider rate limits: comma-separated `provider[/model]=<requests>/min[:<concurrent>]`,
    such as `openai=60/min:20,openai/gpt-image-1-mini=120/min`; `-` for no request rate
    (`gemini=-:10`). Returns {(provider, model or ""): (requests per minute, concurrent calls)}."""
    value = _raw(name)
    value = default if value is None else value
    limits: dict[tuple[str, str], tuple[float | None, int | None]] = {}
    for entry in filter(None, (part.strip() for part in value.split(","))):
        target, _, limit = entry.partition("=")
        provider, _, model = target.strip().partition("/")
        rate, _, concurrent = limit.strip().partition(":")
        count, _, period = rate.partition("/")
        well_formed = (
            provider
            and (rate == "-" or (count.isascii() and count.isdigit() and int(count) >= 1 and period == "min"))
            and (not concurrent or (concurrent.isascii() and concurrent.isdigit() and int(concurrent) >= 1))
            and (rate != "-" or concurrent)
        )
        if not well_formed:
            raise ImproperlyConfigured(
                f"Environment variable {name} must list entries like openai=60/min:20 or "
                f"openai/gpt-image-2=30/min (requests a minute, then optionally concurrent calls), not {entry!r}."
            )
        limits[(provider, model)] = (
            None if rate == "-" else float(count),
            int(concurrent) if concurrent else None,
        )
    return limits


def env_networks(name: str) -> list[ipaddress.IPv4Network | ipaddress.IPv6Network]:
    """Comma-separated addresses or networks (`10.0.0.0/8, 192.0.2.7, 2001:db8::/48`); an address
    is a network of one (/32 or /128). Empty when unset."""
    value = _raw(name)
    if value is None:
        return []
    networks = []
    for entry in filter(None, (part.strip() for part in value.split(","))):
        try:
            networks.append(ipaddress.ip_network(entry, strict=False))
        except ValueError:
            raise ImproperlyConfigured(
                f"Environment variable {name} must list addresses or networks like 10.0.0.0/8 or 192.0.2.7, "
                f"not {entry!r}."
            ) from None
    return networks

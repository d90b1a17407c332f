"""What one delivered output costs, in credits. The one place prices live.

A price is looked up by provider, model, kind and quality; the most specific rule wins, so a
new model only needs a row where it differs from its provider's default.
"""

from __future__ import annotations

# (provider, model or "*", kind or "*", quality or "*") -> credits per output
PRICES: dict[tuple[str, str, str, str], int] = {
    ("local", "*", "*", "*"): 1,
    ("local", "*", "*", "high"): 2,
    ("openai", "*", "*", "*"): 4,
    ("openai", "*", "*", "draft"): 2,
    ("openai", "*", "*", "high"): 8,
    ("gemini", "*", "*", "*"): 3,
    ("gemini", "*", "*", "high"): 6,
    ("gemini", "*", "video", "*"): 20,
}


class UnknownPrice(LookupError):
    pass


def price_per_output(*, provider: str, model: str, kind: str, quality: str) -> int:
    best: tuple[int, int] | None = None  # (specificity, price)
    for (rule_provider, rule_model, rule_kind, rule_quality), price in PRICES.items():
        if rule_provider != provider:
            continue
        parts = ((rule_model, model), (rule_kind, kind), (rule_quality, quality))
        if any(rule not in ("*", actual) for rule, actual in parts):
            continue
        specificity = sum(rule != "*" for rule, _ in parts)
        if best is None or specificity > best[0]:
            best = (specificity, price)
    if best is None:
        raise UnknownPrice(f"No price for provider {provider!r}.")
    return best[1]


def price_table() -> list[dict]:
    """The rules as the API shows them."""
    return [
        {"provider": p, "model": m, "kind": k, "quality": q, "credits_per_output": price}
        for (p, m, k, q), price in PRICES.items()
    ]

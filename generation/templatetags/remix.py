"""What the remix controls (templates/partials/remix_form.html) show of a look."""

from __future__ import annotations

import uuid

from django import template

from generation.models import Look
from generation.services.remix import VariationsOffer, variations_offer

register = template.Library()


@register.simple_tag
def variations_offer_for(look: Look) -> VariationsOffer:
    """What "More like this" makes of `look` and costs now."""
    return variations_offer(look=look)


@register.simple_tag
def new_submit_token() -> str:
    """One token per drawn form: pressing it twice (a double click) starts one job."""
    return uuid.uuid4().hex

"""What the remix controls (templates/partials/remix_form.html) show of a look."""

from __future__ import annotations

from django import template

from generation.models import Look
from generation.pages.submit_token import new_submit_token
from generation.services.remix import VariationsOffer, variations_offer

register = template.Library()


@register.simple_tag(takes_context=True)
def variations_offer_for(context: template.Context, look: Look) -> VariationsOffer:
    """What "More like this" makes of `look` and costs now. Worked out once per job and request:
    a page draws these controls for every image (the lightbox's hidden copies), and the images of
    one job share their settings, so their offer is the same."""
    request = context.get("request")
    offers: dict = getattr(request, "_atelier_variations_offers", {}) if request is not None else {}
    if request is not None:
        request._atelier_variations_offers = offers
    if look.job_id not in offers:
        offers[look.job_id] = variations_offer(look=look)
    return offers[look.job_id]


@register.simple_tag(name="new_submit_token")
def submit_token_tag() -> str:
    """One token per drawn form (generation/pages/submit_token.py)."""
    return new_submit_token()

"""`GET /metrics`: the Prometheus scrape, for operators only.

Access: every check that is configured must pass. METRICS_ALLOWED_IPS, the client's address (the
project's rule, accounts/lockout.py `client_address`: TRUSTED_PROXY_COUNT hops into
X-Forwarded-For; an IPv6 client is its /64, so an IPv6 entry allows at least its whole /64);
METRICS_TOKEN, `Authorization: Bearer <token>`, compared in constant time. With neither
configured the endpoint does not exist (404).

A plain Django view, not the API's: no API-key authentication, no throttle, no session needed
(a scraper sends no cookie), a GET so no CSRF, and `no-store` so no proxy keeps a copy.
"""

from __future__ import annotations

import hmac
import ipaddress

from django.conf import settings
from django.http import Http404, HttpRequest, HttpResponse
from django.views.decorators.http import require_safe
from prometheus_client import CollectorRegistry, multiprocess
from prometheus_client.exposition import choose_encoder

from accounts.lockout import IPV6_CLIENT_PREFIX, client_address
from config.cache_control import never_store
from generation.metrics_collector import JobsCollector

Network = ipaddress.IPv4Network | ipaddress.IPv6Network


@require_safe
def metrics_view(request: HttpRequest) -> HttpResponse:
    token: str = settings.METRICS_TOKEN
    allowed: list[Network] = settings.METRICS_ALLOWED_IPS
    if not token and not allowed:
        raise Http404("Metrics are off: set METRICS_TOKEN or METRICS_ALLOWED_IPS.")
    if allowed and not address_allowed(client_address(request), allowed):
        return _refusal(403, "This address may not read the metrics.")
    if token and not bearer_matches(request, token):
        response = _refusal(401, "A valid metrics token is required.")
        response["WWW-Authenticate"] = 'Bearer realm="metrics"'
        return response

    # A registry per scrape, as the multiprocess mode asks: every process's files, summed, and
    # the database's figures. The metric objects of generation/metrics.py are not registered
    # here (their values in this process are in the files already).
    registry = CollectorRegistry(auto_describe=False)
    multiprocess.MultiProcessCollector(registry)
    registry.register(JobsCollector())
    encoder, content_type = choose_encoder(request.headers.get("Accept", ""))
    response = HttpResponse(encoder(registry), content_type=content_type)
    never_store(response)
    return response


def address_allowed(address: str | None, allowed: list[Network]) -> bool:
    if address is None:
        return False
    client = ipaddress.ip_address(address)
    return any(client in _as_client_network(network) for network in allowed)


def _as_client_network(network: Network) -> Network:
    """An IPv6 client is known only by its /64 (client_address), so a narrower entry is
    widened to its /64: `2001:db8::5` allows the client 2001:db8::/64."""
    if network.version == 6 and network.prefixlen > IPV6_CLIENT_PREFIX:
        return network.supernet(new_prefix=IPV6_CLIENT_PREFIX)
    return network


def bearer_matches(request: HttpRequest, token: str) -> bool:
    scheme, _, presented = request.headers.get("Authorization", "").partition(" ")
    if scheme.lower() != "bearer":
        return False
    return hmac.compare_digest(presented.strip().encode(), token.encode())


def _refusal(status: int, message: str) -> HttpResponse:
    response = HttpResponse(message + "\n", status=status, content_type="text/plain; charset=utf-8")
    never_store(response)
    return response

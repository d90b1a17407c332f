"""Where a webhook may go, and the one HTTP request of an attempt (the SSRF guard).

A webhook URL is given by a team, so the server must not become a way into the network it runs
in: unless `WEBHOOK_ALLOW_PRIVATE_ADDRESSES` is true, every address a URL's host resolves to must
be public (not private, loopback, link-local, multicast, reserved, unspecified, shared (carrier
NAT), nor an IPv6 form of one of those). The check is made twice: when a URL is saved
(`url_refusal`, for the API's and the pages' validation) and before every attempt, since a name
may point elsewhere by then. The sender resolves the name once and connects to the address it
checked (`post` never hands the name to a resolver again), so a DNS answer that changes between
the check and the connection (DNS rebinding) cannot reach a private address; the Host header and
TLS (SNI and the certificate's name) still use the name. Redirects are not followed, the
connection and each read are bounded by `WEBHOOK_TIMEOUT_SECONDS` and the whole exchange by
twice that, and only the first few KB of the answer are read.
"""

from __future__ import annotations

import contextlib
import http.client
import ipaddress
import socket
import ssl
import threading
from dataclasses import dataclass
from urllib.parse import quote, urlsplit

from django.conf import settings
from urllib3.connection import HTTPConnection, HTTPSConnection
from urllib3.exceptions import ConnectTimeoutError, HTTPError, NewConnectionError, ProtocolError
from urllib3.exceptions import TimeoutError as ReadTimedOut

from generation.services.bounded import StepTimeout, call_bounded

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address

# How much of a receiver's answer is read (the delivery log keeps its first 500 characters).
ANSWER_READ_BYTES = 4096
# A host with many addresses is tried at most on this many (one timeout each, in turn).
MAX_ADDRESSES_TRIED = 3

# What `quote` leaves as it is in a request target (already-encoded %XX included).
_URL_PUNCTUATION = "!$&'()*+,/:;=?@%~"
_SHARED_ADDRESS_SPACE = ipaddress.ip_network("100.64.0.0/10")  # carrier-grade NAT (RFC 6598)
# NAT64's well-known prefix (RFC 6052): the IPv4 address in the last 32 bits is what it reaches.
_NAT64_PREFIX = ipaddress.ip_network("64:ff9b::/96")
# Not global, yet public to this Python's `ipaddress` (3.11): IETF protocol assignments (RFC 6890;
# only its tail /29 is in `is_private`) and IPv6 site-local addresses (deprecated, still routed
# inside some networks).
_PROTOCOL_ASSIGNMENTS = ipaddress.ip_network("192.0.0.0/24")
_SITE_LOCAL = ipaddress.ip_network("fec0::/10")


class AddressRefused(Exception):
    """The URL, or an address its host resolves to, may not receive webhooks (a sentence why)."""


class Unreachable(Exception):
    """The host could not be resolved or reached, or gave no complete answer in time (in words).
    Worth trying again later: names, networks and receivers come back."""


@dataclass(frozen=True)
class Destination:
    """A checked URL: the name to show in Host and TLS, and the addresses to connect to."""

    scheme: str
    host: str  # ASCII (IDNA) host name, or the address itself; IPv6 without brackets
    port: int
    target: str  # the path and query, as the request line asks for them
    addresses: tuple[IPAddress, ...]

    @property
    def host_header(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        default_port = 443 if self.scheme == "https" else 80
        return host if self.port == default_port else f"{host}:{self.port}"


@dataclass(frozen=True)
class Answer:
    status: int
    headers: dict[str, str]  # names in lower case
    body: bytes  # at most ANSWER_READ_BYTES


def address_kind(address: IPAddress) -> str | None:
    """What kind of non-public address `address` is ("a loopback address"), None when it is
    public. IPv6 forms that carry an IPv4 address (mapped, 6to4, NAT64) are judged by the IPv4
    address they reach."""
    embedded = _embedded_ipv4(address)
    if embedded is not None:
        kind = address_kind(embedded)
        return f"an IPv6 form of {embedded}, {kind}" if kind else None
    if address.is_loopback:
        return "a loopback address"
    if address.is_link_local:
        return "a link-local address"
    if address.is_multicast:
        return "a multicast address"
    if address.is_unspecified:
        return "an unspecified address"
    if address in _SHARED_ADDRESS_SPACE:
        return "a shared (carrier-grade NAT) address"
    if address in _SITE_LOCAL:
        return "a site-local address"
    if address.is_private or address in _PROTOCOL_ASSIGNMENTS:
        return "a private address"
    if address.is_reserved or not address.is_global:
        return "a reserved address, not a public one"
    return None


def _embedded_ipv4(address: IPAddress) -> ipaddress.IPv4Address | None:
    if not isinstance(address, ipaddress.IPv6Address):
        return None
    if address.ipv4_mapped is not None:
        return address.ipv4_mapped
    if address.sixtofour is not None:
        return address.sixtofour
    if address in _NAT64_PREFIX:
        return ipaddress.IPv4Address(int(address) & 0xFFFFFFFF)
    return None


def _read_url(url: str) -> tuple[str, str, int, str]:
    """The scheme, ASCII host, port and request target of a URL webhooks may use; AddressRefused
    with a sentence for anything else."""
    if any(ord(char) <= 0x20 or ord(char) == 0x7F for char in url):
        raise AddressRefused("The URL contains spaces or control characters.")
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError:
        raise AddressRefused("The URL could not be read (is the port a number from 1 to 65535?).") from None
    scheme = parts.scheme.lower()
    if scheme not in ("http", "https"):
        raise AddressRefused("Only http and https URLs can receive webhooks.")
    if parts.username is not None or parts.password is not None:
        raise AddressRefused(
            "The URL must not carry a user name or password: receivers check the webhook's signature instead."
        )
    if not parts.hostname:
        raise AddressRefused("The URL has no host.")
    try:
        host = parts.hostname if ":" in parts.hostname else parts.hostname.encode("idna").decode("ascii")
    except UnicodeError:
        raise AddressRefused(f"{parts.hostname} is not a valid host name.") from None
    # A request line is ASCII: letters beyond it are sent percent-encoded, as browsers send them.
    target = quote((parts.path or "/") + (f"?{parts.query}" if parts.query else ""), safe=_URL_PUNCTUATION)
    return scheme, host, port or (443 if scheme == "https" else 80), target


def _literal(host: str) -> IPAddress | None:
    try:
        return ipaddress.ip_address(host)
    except ValueError:
        return None


def _resolve(host: str, port: int) -> tuple[IPAddress, ...]:
    """Every address of `host`, in the resolver's order; one lookup, bounded in time."""
    given = _literal(host)
    if given is not None:
        return (given,)  # an address given as such needs no lookup
    timeout = settings.WEBHOOK_TIMEOUT_SECONDS
    try:
        infos = call_bounded(
            lambda: socket.getaddrinfo(host, port, type=socket.SOCK_STREAM), timeout=timeout, what="DNS lookup"
        )
    except StepTimeout:
        raise Unreachable(f"the name {host} could not be resolved within {timeout:g} s") from None
    except (socket.gaierror, UnicodeError) as error:
        raise Unreachable(f"the name {host} could not be resolved ({error})") from None
    addresses: list[IPAddress] = []
    for info in infos:
        address = ipaddress.ip_address(str(info[4][0]).split("%", 1)[0])
        if address not in addresses:
            addresses.append(address)
    if not addresses:
        raise Unreachable(f"the name {host} has no address")
    return tuple(addresses)


def destination_resolve(url: str) -> Destination:
    """Read the URL, resolve its host once and check every address. AddressRefused when the URL or
    one of its addresses may not receive webhooks (a host with a public and a private address is
    refused whole: it is either a mistake or a trap); Unreachable when the name does not resolve."""
    scheme, host, port, target = _read_url(url)
    addresses = _resolve(host, port)
    if not settings.WEBHOOK_ALLOW_PRIVATE_ADDRESSES:
        given = _literal(host)
        for address in addresses:
            kind = address_kind(address)
            if kind:
                shown = f"{address} is {kind}" if address == given else f"{host} resolves to {address}, {kind}"
                raise AddressRefused(f"Refused: {shown}; webhooks go only to public addresses.")
    return Destination(scheme=scheme, host=host, port=port, target=target, addresses=addresses)


def url_refusal(url: str) -> str | None:
    """Why `url` cannot receive webhooks, as a sentence for the person who gave it; None when it
    can. With WEBHOOK_ALLOW_PRIVATE_ADDRESSES the host is not looked up (any address will do);
    otherwise a name that does not resolve now is refused too (most often a typo). The sender
    checks again before every attempt."""
    try:
        if settings.WEBHOOK_ALLOW_PRIVATE_ADDRESSES:
            _read_url(url)
        else:
            destination_resolve(url)
    except AddressRefused as refusal:
        return str(refusal)
    except Unreachable as error:
        return f"The URL's host cannot be used: {error}."
    return None


def post(destination: Destination, *, body: bytes, headers: dict[str, str]) -> Answer:
    """POST `body` to the destination, connecting to its checked addresses (never to its name).

    1. Try its addresses in turn (at most MAX_ADDRESSES_TRIED) until one accepts the connection
       within WEBHOOK_TIMEOUT_SECONDS.
    2. Send the request with the name in Host (and in TLS: SNI and the certificate check).
    3. Read the status, headers and the first ANSWER_READ_BYTES of the answer, each read bounded
       by WEBHOOK_TIMEOUT_SECONDS and the whole exchange by twice that (a receiver that answers a
       byte at a time is cut off), then close the connection. A redirect is an answer like any
       other: it is not followed.

    Raises Unreachable (in words) when no answer could be had."""
    timeout = settings.WEBHOOK_TIMEOUT_SECONDS
    last_error = "no address to connect to"
    for address in destination.addresses[:MAX_ADDRESSES_TRIED]:
        connection = _connection(destination, address, timeout)
        try:
            connection.connect()
        except NewConnectionError as error:  # urllib3 makes it a ConnectTimeoutError too: first
            last_error = _connect_error_words(address, error)
            connection.close()
            continue
        except (ConnectTimeoutError, TimeoutError):
            last_error = f"connecting to {address} timed out after {timeout:g} s"
            connection.close()
            continue
        except (OSError, HTTPError) as error:  # ssl.SSLError is an OSError
            last_error = _connect_error_words(address, error)
            connection.close()
            if isinstance(error, ssl.SSLError):
                break  # a TLS failure is the receiver's certificate, not the route: another address has it too
            continue
        return _exchange(connection, destination, body=body, headers=headers, timeout=timeout)
    raise Unreachable(last_error)


def _connection(destination: Destination, address: IPAddress, timeout: float) -> HTTPConnection:
    if destination.scheme == "https":
        return HTTPSConnection(
            host=str(address),
            port=destination.port,
            timeout=timeout,
            server_hostname=destination.host,  # SNI, and the name the certificate must carry
            cert_reqs="CERT_REQUIRED",
        )
    return HTTPConnection(host=str(address), port=destination.port, timeout=timeout)


def _connect_error_words(address: IPAddress, error: BaseException) -> str:
    if isinstance(error, ssl.SSLCertVerificationError):
        return f"the TLS certificate of {address} was not accepted ({getattr(error, 'verify_message', error)})"
    if isinstance(error, ssl.SSLError):
        return f"the TLS handshake with {address} failed ({error.reason or error})"
    cause = error.__cause__ or error.__context__ or error
    if isinstance(cause, ConnectionRefusedError):
        return f"{address} refused the connection"
    return f"could not connect to {address} ({cause.__class__.__name__}: {cause})"


def _exchange(
    connection: HTTPConnection, destination: Destination, *, body: bytes, headers: dict[str, str], timeout: float
) -> Answer:
    deadline = 2 * timeout
    cut_off = threading.Event()

    def cut() -> None:
        # A read blocked on a receiver that drips its answer is woken by shutting the socket.
        cut_off.set()
        sock = connection.sock
        if sock is not None:
            with contextlib.suppress(OSError):  # already closed: nothing left to wake
                sock.shutdown(socket.SHUT_RDWR)

    watchdog = threading.Timer(deadline, cut)
    watchdog.daemon = True
    watchdog.start()
    try:
        connection.request(
            "POST",
            destination.target,
            body=body,
            headers={**headers, "Host": destination.host_header, "Connection": "close"},
            preload_content=False,
            decode_content=False,
        )
        response = connection.getresponse()
        answer_body = response.read(ANSWER_READ_BYTES, decode_content=False)
        if cut_off.is_set():
            # http.client takes the end of the stream for the end of the headers: what was read
            # before the cut looks like an answer, but the receiver never finished it.
            raise TimeoutError
        return Answer(
            status=response.status,
            headers={name.lower(): value for name, value in response.headers.items()},
            body=answer_body[:ANSWER_READ_BYTES],
        )
    except (TimeoutError, OSError, HTTPError, http.client.HTTPException) as error:
        if cut_off.is_set():
            raise Unreachable(f"timed out: the answer did not complete within {deadline:g} s") from None
        if isinstance(error, TimeoutError | ReadTimedOut):
            raise Unreachable(f"timed out after {timeout:g} s waiting for the answer") from None
        raise Unreachable(_exchange_error_words(error)) from None
    finally:
        watchdog.cancel()
        connection.close()


def _exchange_error_words(error: BaseException) -> str:
    if isinstance(error, ProtocolError | http.client.RemoteDisconnected | ConnectionResetError | BrokenPipeError):
        return "the receiver closed the connection without an answer"
    if isinstance(error, http.client.HTTPException):
        return f"the receiver's answer is not valid HTTP ({error.__class__.__name__})"
    return f"the exchange failed ({error.__class__.__name__}: {error})"

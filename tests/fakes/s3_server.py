"""A real S3-compatible server for the tests: moto's S3 in server mode, behind the checks of
signatures that moto leaves out.

moto (server mode) speaks the S3 API over HTTP and keeps its objects in memory; it refuses an
anonymous read of a private object (the object's ACL, private unless one is given). But it
takes any URL whose query holds "Signature=" as signed: it checks neither the signature nor the
expiry of a presigned URL (moto/s3/responses.py, `_key_response`; its optional IAM checks read
the Authorization header only, which a presigned URL has not). S3 and R2 refuse a URL whose
signature does not match (403 SignatureDoesNotMatch) and one past X-Amz-Date + X-Amz-Expires
(403 AccessDenied, "Request has expired"). `SignatureCheck` does what they do, written from
the SigV4 specification rather than with botocore's signer (the code under test signs with it),
for URLs signed in the query string and for requests signed in the Authorization header (the
SDK's own calls: a worker with the wrong keys is refused, as S3 would refuse it). Like R2, and
S3 for any bucket made since 2020, it refuses Signature Version 2, which botocore still uses to
presign a URL when it is not told otherwise and the region is us-east-1 or none.

Run it as a process of its own, as the tests do:
`python -m tests.fakes.s3_server --port N --access-key KEY --secret-key SECRET`;
it prints READY_LINE once it listens.
"""

from __future__ import annotations

import argparse
import calendar
import hashlib
import hmac
import time
from collections.abc import Callable, Iterable
from typing import Any
from urllib.parse import parse_qsl, quote
from xml.sax.saxutils import escape

ALGORITHM = "AWS4-HMAC-SHA256"
# S3 refuses a presigned URL meant to last longer than a week.
MAX_EXPIRES_SECONDS = 7 * 24 * 3600
# How far a header-signed request's clock may be from the server's (S3 allows 15 minutes).
MAX_SKEW_SECONDS = 15 * 60
READY_LINE = "S3 server ready"

StartResponse = Callable[..., Any]


class Refusal(Exception):
    def __init__(self, code: str, message: str, status: str = "403 Forbidden") -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.status = status


# What S3 answers a request signed with Signature Version 2 where only version 4 is accepted (buckets
# made since mid-2020, regions opened since 2014); R2 accepts version 4 alone too.
SIGNATURE_V2_REFUSED = Refusal(
    "InvalidRequest",
    "The authorization mechanism you have provided is not supported. Please use AWS4-HMAC-SHA256.",
    status="400 Bad Request",
)


def _uri_encode(value: str) -> str:
    """SigV4's URI encoding: every byte but A-Z a-z 0-9 - _ . ~ percent-encoded."""
    return quote(value, safe="-_.~")


def _canonical_query(query: str, *, leave_out: str = "") -> str:
    pairs = [(_uri_encode(key), _uri_encode(value)) for key, value in parse_qsl(query, keep_blank_values=True)]
    return "&".join(f"{key}={value}" for key, value in sorted(pairs) if key != leave_out)


def _header(environ: dict[str, Any], name: str) -> str:
    if name == "content-type":
        raw = environ.get("CONTENT_TYPE", "")
    elif name == "content-length":
        raw = environ.get("CONTENT_LENGTH", "")
    else:
        raw = environ.get("HTTP_" + name.upper().replace("-", "_"), "")
    return " ".join(str(raw).split())


def _signature(
    *,
    secret_key: str,
    timestamp: str,
    scope: str,
    method: str,
    path: str,
    query: str,
    headers: str,
    signed: str,
    payload: str,
) -> str:
    """The SigV4 signature of a request: the canonical request, the string to sign, the key
    derived from the secret for the scope's day, region and service."""
    canonical = "\n".join([method, path, query, headers + "\n", signed, payload])
    to_sign = "\n".join([ALGORITHM, timestamp, scope, hashlib.sha256(canonical.encode()).hexdigest()])
    day, region, service, terminator = scope.split("/")
    key = ("AWS4" + secret_key).encode()
    for part in (day, region, service, terminator):
        key = hmac.new(key, part.encode(), hashlib.sha256).digest()
    return hmac.new(key, to_sign.encode(), hashlib.sha256).hexdigest()


def _seconds(timestamp: str) -> int:
    try:
        return calendar.timegm(time.strptime(timestamp, "%Y%m%dT%H%M%SZ"))
    except ValueError:
        raise Refusal("AccessDenied", "X-Amz-Date must be in the ISO8601 Long Format.") from None


class SignatureCheck:
    """WSGI middleware: S3's checks of SigV4 signatures and of presigned URLs' expiry, in front
    of `app`. An unsigned request goes through: the object's ACL decides (moto refuses a
    private object to anyone who does not sign)."""

    def __init__(
        self,
        app: Callable[..., Iterable[bytes]],
        *,
        access_key: str,
        secret_key: str,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.app = app
        self.access_key = access_key
        self.secret_key = secret_key
        self.clock = clock

    def __call__(self, environ: dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
        query = environ.get("QUERY_STRING", "")
        params = dict(parse_qsl(query, keep_blank_values=True))
        authorization = environ.get("HTTP_AUTHORIZATION", "")
        try:
            if "X-Amz-Signature" in params:
                self._check_presigned(environ, query, params)
            elif authorization.startswith(ALGORITHM):
                self._check_header_signed(environ, query, authorization)
            elif "Signature" in params or authorization.startswith("AWS "):
                raise SIGNATURE_V2_REFUSED
        except Refusal as refusal:
            body = (
                '<?xml version="1.0" encoding="UTF-8"?>\n'
                f"<Error><Code>{escape(refusal.code)}</Code><Message>{escape(refusal.message)}</Message></Error>"
            ).encode()
            start_response(refusal.status, [("Content-Type", "application/xml"), ("Content-Length", str(len(body)))])
            return [body]
        return self.app(environ, start_response)

    def _path(self, environ: dict[str, Any]) -> str:
        # The path as the client sent it (still percent-encoded): S3 signs it without normalizing.
        raw = environ.get("RAW_URI") or environ.get("REQUEST_URI") or quote(environ.get("PATH_INFO", "/"))
        return str(raw).split("?", 1)[0]

    def _scope(self, credential: str) -> str:
        access_key, _, scope = credential.partition("/")
        if access_key != self.access_key:
            raise Refusal("InvalidAccessKeyId", "The AWS Access Key Id you provided does not exist in our records.")
        return scope

    def _check_presigned(self, environ: dict[str, Any], query: str, params: dict[str, str]) -> None:
        if params.get("X-Amz-Algorithm") != ALGORITHM:
            raise Refusal("AuthorizationQueryParametersError", f"X-Amz-Algorithm only supports {ALGORITHM}.")
        scope = self._scope(params.get("X-Amz-Credential", ""))
        timestamp = params.get("X-Amz-Date", "")
        try:
            expires = int(params.get("X-Amz-Expires", ""))
        except ValueError:
            raise Refusal("AuthorizationQueryParametersError", "X-Amz-Expires must be a number.") from None
        if not 0 < expires <= MAX_EXPIRES_SECONDS:
            raise Refusal("AuthorizationQueryParametersError", "X-Amz-Expires must be between 1 and 604800 seconds.")
        signed = params.get("X-Amz-SignedHeaders", "")
        expected = _signature(
            secret_key=self.secret_key,
            timestamp=timestamp,
            scope=scope,
            method=environ["REQUEST_METHOD"],
            path=self._path(environ),
            query=_canonical_query(query, leave_out="X-Amz-Signature"),
            headers="\n".join(f"{name}:{_header(environ, name)}" for name in signed.split(";")),
            signed=signed,
            payload="UNSIGNED-PAYLOAD",
        )
        if not hmac.compare_digest(expected, params["X-Amz-Signature"]):
            raise Refusal(
                "SignatureDoesNotMatch",
                "The request signature we calculated does not match the signature you provided.",
            )
        # Checked after the signature, as S3 does: an expired URL is refused whoever made it.
        if self.clock() > _seconds(timestamp) + expires:
            raise Refusal("AccessDenied", "Request has expired")

    def _check_header_signed(self, environ: dict[str, Any], query: str, authorization: str) -> None:
        fields = dict(part.strip().split("=", 1) for part in authorization[len(ALGORITHM) :].split(",") if "=" in part)
        scope = self._scope(fields.get("Credential", ""))
        timestamp = _header(environ, "x-amz-date")
        if abs(self.clock() - _seconds(timestamp)) > MAX_SKEW_SECONDS:
            raise Refusal(
                "RequestTimeTooSkewed", "The difference between the request time and the current time is too large."
            )
        signed = fields.get("SignedHeaders", "")
        expected = _signature(
            secret_key=self.secret_key,
            timestamp=timestamp,
            scope=scope,
            method=environ["REQUEST_METHOD"],
            path=self._path(environ),
            query=_canonical_query(query),
            headers="\n".join(f"{name}:{_header(environ, name)}" for name in signed.split(";")),
            signed=signed,
            payload=_header(environ, "x-amz-content-sha256") or "UNSIGNED-PAYLOAD",
        )
        if not hmac.compare_digest(expected, fields.get("Signature", "")):
            raise Refusal(
                "SignatureDoesNotMatch",
                "The request signature we calculated does not match the signature you provided.",
            )


def serve(*, host: str, port: int, access_key: str, secret_key: str) -> None:
    # Imported here: only the server's own process needs moto (and it takes a second to load).
    from moto.moto_server.werkzeug_app import DomainDispatcherApplication, MotoRequestHandler, create_backend_app
    from werkzeug.serving import make_server

    app = SignatureCheck(DomainDispatcherApplication(create_backend_app), access_key=access_key, secret_key=secret_key)
    server = make_server(host, port, app, threaded=True, request_handler=MotoRequestHandler)
    print(f"{READY_LINE} on http://{host}:{port}", flush=True)
    server.serve_forever()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--access-key", required=True)
    parser.add_argument("--secret-key", required=True)
    arguments = parser.parse_args()
    serve(host=arguments.host, port=arguments.port, access_key=arguments.access_key, secret_key=arguments.secret_key)


if __name__ == "__main__":
    main()

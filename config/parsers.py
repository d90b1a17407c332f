"""The API's JSON parser: a body is bounded in size and in nesting depth before it is parsed.

DRF's JSONParser reads the whole stream, however large (Django's DATA_UPLOAD_MAX_MEMORY_SIZE only
guards `request.body`, which DRF does not use), and Python's json module recurses once per level,
so 1,000 nested brackets end in a RecursionError, a 500. A job body is a few hundred bytes and
four levels deep; this parser answers anything far beyond that in the API's error shape:
413 REQUEST_TOO_LARGE over `API_JSON_MAX_BYTES` (checked on Content-Length before reading, and
on what is read), 400 PARSE_ERROR deeper than `MAX_JSON_DEPTH` (counted without recursion).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import IO, Any

from django.conf import settings
from rest_framework.exceptions import ParseError
from rest_framework.parsers import JSONParser, get_encoding  # type: ignore[attr-defined]  # not in the stubs
from rest_framework.utils import json

from config.errors import RequestTooLarge

# The deepest valid body nests four levels (`inputs.references[].asset_id`); 32 leaves room for
# any body the API will take and stops long before Python's recursion limit (about 1,000).
MAX_JSON_DEPTH = 32

# What nesting depends on: quotes (in and out of strings), escapes (an escaped quote does not end
# a string) and brackets. One linear pass: a regex that skips whole strings backtracks to
# quadratic time on a body of unclosed escaped quotes (15 s of CPU for 64 KB of them).
_TOKEN = re.compile(r'\\.|["\[\]{}]', re.DOTALL)


def json_nesting_depth(text: str) -> int:
    """How deeply the arrays and objects of `text` nest, counted in one pass, without recursion."""
    depth = deepest = 0
    in_string = False
    for token in _TOKEN.findall(text):
        if token == '"':
            in_string = not in_string
        elif in_string or len(token) == 2:  # a bracket inside a string, or an escape
            continue
        elif token in "[{":
            depth += 1
            deepest = max(deepest, depth)
        else:
            depth -= 1
    return deepest


def _declared_length(parser_context: Mapping[str, Any]) -> int:
    request = parser_context.get("request")
    try:
        return int(request.META.get("CONTENT_LENGTH") or 0) if request is not None else 0
    except (TypeError, ValueError):
        return 0  # Django reads nothing from a body of unknown length


class BoundedJSONParser(JSONParser):
    def parse(self, stream: IO[Any] | None, media_type: str | None = None, parser_context: Any = None) -> Any:
        parser_context = parser_context or {}
        limit = settings.API_JSON_MAX_BYTES
        if _declared_length(parser_context) > limit:
            raise RequestTooLarge(limit_bytes=limit)  # refused before a byte of it is read
        raw = stream.read(limit + 1) if stream is not None else b""
        if len(raw) > limit:
            raise RequestTooLarge(limit_bytes=limit)
        encoding = get_encoding(parser_context)  # DRF's: refuses bytes-to-bytes codecs such as bz2_codec
        try:
            text = raw.decode(encoding)
        except ValueError as exc:  # UnicodeDecodeError
            raise ParseError(f"JSON parse error - the body is not valid {encoding}: {exc}") from None
        if json_nesting_depth(text) > MAX_JSON_DEPTH:
            raise ParseError(f"JSON parse error - the body nests deeper than {MAX_JSON_DEPTH} levels.")
        try:
            parse_constant = json.strict_constant if self.strict else None
            return json.loads(text, parse_constant=parse_constant)
        except RecursionError:  # cannot happen below MAX_JSON_DEPTH; a 400 all the same, never a 500
            raise ParseError("JSON parse error - the body nests too deeply.") from None
        except ValueError as exc:
            raise ParseError(f"JSON parse error - {exc}") from None

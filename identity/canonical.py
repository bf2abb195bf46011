"""Canonical JSON per RFC 8785, the JSON Canonicalization Scheme (JCS).

Signed messages are the JCS bytes of their content, so that any language
reproduces the exact bytes that were signed: no whitespace, object members
sorted by the UTF-16 code units of their names, strings escaped the way
ECMAScript ``JSON.stringify`` escapes them, numbers written the way
ECMAScript ``Number.prototype.toString`` writes IEEE doubles, UTF-8 out.

``canonicalize`` is the reference serializer.  ``parse_canonical`` is the
receiving side and a hot path: it parses with orjson and proves canonicality
by re-serializing with orjson (whose output is the JCS output for every value
but a few number spellings and astral member names), falling back to
``canonicalize`` for exactly those inputs and for anything that differs.

Python ``int`` values outside the I-JSON safe range ±(2**53 - 1) are refused:
JCS numbers are IEEE doubles, so such an integer would silently lose
precision.  On the wire, as RFC 8785 reads it, every number is a double: an
integer token beyond the safe range is accepted only if it is the canonical
spelling of a double (``9007199254740992``, ``100000000000000000000``) and
comes back as a ``float``, so ``parse_canonical(canonicalize(x)) == x`` for
every finite float ``x``; ``9007199254740993`` is refused as non-canonical.
"""

from __future__ import annotations

import json
import math
import re
from typing import Any

import orjson

from identity.errors import IdentityError

__all__ = ["CanonicalError", "canonicalize", "parse_canonical"]

_MAX_SAFE_INTEGER = 2**53 - 1
_SAFE_INT_TOKEN_CHARS = len(str(-_MAX_SAFE_INTEGER))

_ESCAPES = {'"': '\\"', "\\": "\\\\", "\b": "\\b", "\f": "\\f", "\n": "\\n", "\r": "\\r", "\t": "\\t"}
_ESCAPES.update({chr(c): f"\\u{c:04x}" for c in range(0x20) if chr(c) not in _ESCAPES})
_NEEDS_ESCAPE = re.compile('["\\\\\x00-\x1f\ud800-\udfff]')
_ASTRAL_LEAD_BYTE = re.compile(b"[\xf0-\xff]")
_BOM = b"\xef\xbb\xbf"
_ORJSON_OPTIONS = orjson.OPT_SORT_KEYS | orjson.OPT_STRICT_INTEGER
# Types orjson would write in its own way (dataclasses, datetimes, str/int/dict subclasses) raise instead.
_ORJSON_FAST_OPTIONS = (_ORJSON_OPTIONS | orjson.OPT_PASSTHROUGH_DATACLASS | orjson.OPT_PASSTHROUGH_DATETIME
                        | orjson.OPT_PASSTHROUGH_SUBCLASS)
# Negative zero as orjson writes it before a delimiter: JCS writes "0", so such bytes take the reference.
_NEGATIVE_ZERO = (b"-0.0,", b"-0.0}", b"-0.0]")
_FOLD_DELIMITERS = bytes.maketrans(b",]}+-", b"\x01\x01\x01\x02\x02")


class CanonicalError(IdentityError):
    """A value that cannot be canonicalized, or wire bytes that are not canonical JSON.

    ``code`` is ``malformed_json`` (bytes that are not UTF-8 JSON), ``non_canonical``
    (JSON, but not byte-identical to its canonical form) or ``not_serializable``
    (a Python value JCS cannot represent).
    """

    code = "non_canonical"


class _Refusal(Exception):
    """A value JCS cannot represent; carries the path to it, built up as it propagates."""

    def __init__(self, message: str, hint: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint
        self.path: list[str] = []


def canonicalize(value: Any) -> bytes:
    """Return the RFC 8785 canonical UTF-8 bytes of ``value``, the exact bytes a signature covers.

    Every sealed message goes through here, so orjson writes it first; its bytes are
    taken only when they are JCS by the same test ``parse_canonical`` uses and read
    back equal to ``value`` (which turns away NaN and infinities, written as null,
    and types JSON has no word for). Anything else goes to the reference serializer.
    """
    try:
        fast = orjson.dumps(value, option=_ORJSON_FAST_OPTIONS)
    except (orjson.JSONEncodeError, TypeError):
        fast = None
    if fast is not None and b".0" in fast:
        if any(zero in fast for zero in _NEGATIVE_ZERO):
            fast = None
        else:  # an integral float, "2.0", is "2" in JCS; a hit inside a string fails the read-back below
            fast = fast.replace(b".0,", b",").replace(b".0}", b"}").replace(b".0]", b"]")
    if fast is not None and not _maybe_differs_from_jcs(fast) and orjson.loads(fast) == value:
        return fast
    return _canonicalize_reference(value)


def _canonicalize_reference(value: Any) -> bytes:
    """The reference serializer, written from the RFC: exact for every value, and the one that explains refusals."""
    parts: list[str] = []
    try:
        _serialize(value, parts)
    except _Refusal as refusal:
        where = "$" + "".join(reversed(refusal.path))
        raise CanonicalError(f"{where}: {refusal.message}", code="not_serializable", hint=refusal.hint) from None
    except RecursionError:
        raise CanonicalError("value is nested too deeply or contains itself", code="not_serializable") from None
    return "".join(parts).encode("utf-8")


def _serialize(value: Any, out: list[str]) -> None:
    """Append the canonical text of ``value`` to ``out``."""
    if value is None:
        out.append("null")
    elif value is True:
        out.append("true")
    elif value is False:
        out.append("false")
    elif isinstance(value, str):
        out.append(_serialize_string(value))
    elif isinstance(value, int):
        out.append(_serialize_int(value))
    elif isinstance(value, float):
        out.append(_serialize_float(value))
    elif isinstance(value, dict):
        _serialize_object(value, out)
    elif isinstance(value, (list, tuple)):
        out.append("[")
        for index, item in enumerate(value):
            if index:
                out.append(",")
            try:
                _serialize(item, out)
            except _Refusal as refusal:
                refusal.path.append(f"[{index}]")
                raise
        out.append("]")
    else:
        raise _Refusal(
            f"{type(value).__name__} has no JSON form", hint="use None, bool, int, float, str, list, tuple or dict"
        )


def _serialize_object(value: dict[Any, Any], out: list[str]) -> None:
    """Append a JSON object whose members are sorted by the UTF-16 code units of their names."""
    for name in value:
        if not isinstance(name, str):
            raise _Refusal(f"object key of type {type(name).__name__} is not a str")
    if all(name.isascii() for name in value):
        names = sorted(value)
    else:
        names = sorted(value, key=_utf16_sort_key)
    out.append("{")
    for index, name in enumerate(names):
        if index:
            out.append(",")
        out.append(_serialize_string(name))
        out.append(":")
        try:
            _serialize(value[name], out)
        except _Refusal as refusal:
            refusal.path.append(f"[{json.dumps(name)}]")
            raise
    out.append("}")


def _utf16_sort_key(name: str) -> bytes:
    """Sort key giving RFC 8785 member order: big-endian UTF-16 bytes compare like code units."""
    return name.encode("utf-16-be", "surrogatepass")


def _serialize_string(text: str) -> str:
    """Quote ``text`` as ECMAScript JSON.stringify does: short escapes, \\u00xx for other controls."""
    return '"' + _NEEDS_ESCAPE.sub(_escape_match, text) + '"'


def _escape_match(match: re.Match[str]) -> str:
    """Return the JSON escape of the character ``match`` found, refusing a lone surrogate."""
    escape = _ESCAPES.get(match.group())
    if escape is None:
        raise _Refusal("string contains a lone surrogate, which is not Unicode text")
    return escape


def _serialize_int(value: int) -> str:
    """Write an integer in the I-JSON safe range as plain decimal digits."""
    if -_MAX_SAFE_INTEGER <= value <= _MAX_SAFE_INTEGER:
        return int.__repr__(value)
    shown = int.__repr__(value) if value.bit_length() <= 256 else f"of {value.bit_length()} bits"
    raise _Refusal(
        f"integer {shown} is outside ±(2**53-1) and would lose precision as an IEEE double",
        hint="send large integers as strings",
    )


def _serialize_float(value: float) -> str:
    """Write a finite float as ECMAScript Number.prototype.toString does (RFC 8785 section 3.2.2.3)."""
    if not math.isfinite(value):
        raise _Refusal(f"{value!r} has no JSON form")
    if value == 0:
        return "0"
    if value < 0:
        return "-" + _es_layout(*_shortest_digits(-value))
    return _es_layout(*_shortest_digits(value))


def _shortest_digits(value: float) -> tuple[str, int]:
    """Return (s, n) with value == 0.s * 10**n, s the shortest round-trip digits without trailing zeros.

    ``float.__repr__`` yields the shortest correctly rounded digits, the same
    digits ECMAScript chooses; only the layout around them differs.
    """
    mantissa, _, exponent = float.__repr__(value).partition("e")
    whole, _, fraction = mantissa.partition(".")
    all_digits = whole + fraction
    significant = all_digits.lstrip("0")
    point = len(whole) + int(exponent or 0) - (len(all_digits) - len(significant))
    return significant.rstrip("0"), point


def _es_layout(digits: str, point: int) -> str:
    """Lay out digits s and exponent n as ECMAScript Number::toString steps 6 to 10 do."""
    k = len(digits)
    if k <= point <= 21:
        return digits + "0" * (point - k)
    if 0 < point <= 21:
        return digits[:point] + "." + digits[point:]
    if -6 < point <= 0:
        return "0." + "0" * -point + digits
    exponent = point - 1
    head = digits if k == 1 else digits[0] + "." + digits[1:]
    return f"{head}e{'+' if exponent > 0 else '-'}{abs(exponent)}"


def _wire_int(token: str) -> int | float:
    """Read an int token as JCS does: exact in the safe range, else the IEEE double it denotes."""
    if len(token) <= _SAFE_INT_TOKEN_CHARS:
        value = int(token)
        if -_MAX_SAFE_INTEGER <= value <= _MAX_SAFE_INTEGER:
            return value
    return float(token)


def _reject_constant(token: str) -> Any:
    """Refuse NaN, Infinity and -Infinity, which Python's json accepts but JSON does not."""
    raise CanonicalError(f"{token} is not JSON", code="malformed_json")


_FULL_DECODER = json.JSONDecoder(parse_int=_wire_int, parse_constant=_reject_constant)


def parse_canonical(data: bytes) -> Any:
    """Parse wire bytes that must already be RFC 8785 canonical, so a signature over them is unambiguous.

    Raises ``CanonicalError`` with code ``malformed_json`` for bytes that are not
    UTF-8 JSON (a BOM, NaN or Infinity included) and ``non_canonical`` for JSON
    that is not byte-identical to its canonical form (whitespace, member order,
    duplicate names, escapes, number spelling).  Integers come back as ``int``
    within ±(2**53-1) and as ``float`` beyond it.
    """
    try:
        value = orjson.loads(data)
        serialized = orjson.dumps(value, option=_ORJSON_OPTIONS)
    except (orjson.JSONDecodeError, orjson.JSONEncodeError):
        return _parse_slow(data)
    # orjson writes the JCS bytes for every value but three: integers beyond
    # 2**53-1 (OPT_STRICT_INTEGER refuses them above), integral floats (which it
    # always spells "N.0") and floats it writes with an exponent (always "e+" or
    # "e-"). Since the wire must equal orjson's output, those spellings in the
    # wire, and astral member names (sorted by code point, not UTF-16), send the
    # bytes to the reference, which decides exactly; so does any mismatch.
    # Equality also rules out duplicate names: orjson never writes one twice.
    if serialized == data and not _maybe_differs_from_jcs(data):
        return value
    return _parse_slow(data)


def _maybe_differs_from_jcs(data: bytes) -> bool:
    """True if orjson's spelling of ``data`` may not be RFC 8785's (false alarms inside strings are harmless).

    One translate folds "," "]" "}" into \x01 and "+" "-" into \x02, so two
    searches find ".0" before a delimiter (an integral float) and "e+"/"e-".
    """
    folded = data.translate(_FOLD_DELIMITERS)
    return (
        b".0\x01" in folded
        or b"e\x02" in folded
        or data.endswith(b".0")
        or not (data.isascii() or _ASTRAL_LEAD_BYTE.search(data) is None)
    )


def _parse_slow(data: bytes) -> Any:
    """Classify and check bytes with the reference serializer; the rare path of ``parse_canonical``."""
    if data.startswith(_BOM):
        raise CanonicalError("JSON starts with a byte order mark", code="malformed_json")
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as err:
        raise CanonicalError(f"not UTF-8: {err.reason} at byte {err.start}", code="malformed_json") from None
    try:
        value = _FULL_DECODER.decode(text)
    except json.JSONDecodeError as err:
        raise CanonicalError(f"not JSON: {err}", code="malformed_json") from None
    except RecursionError:
        raise CanonicalError("JSON is nested too deeply to parse", code="malformed_json") from None
    try:
        canonical = _canonicalize_reference(value)
    except CanonicalError as err:
        raise CanonicalError(f"JSON has no canonical form: {err}", code="non_canonical") from None
    if canonical != data:
        raise CanonicalError("JSON is not in canonical form (RFC 8785)", code="non_canonical")
    return value

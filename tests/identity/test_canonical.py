"""Tests for identity.canonical: RFC 8785 (JCS) vectors, refusals, and the fast path of parse_canonical.

The expected outputs below come from RFC 8785 itself (section 3.2.2 sample,
section 3.2.3 sorting example, section 3.2.4 UTF-8 bytes, Appendix B number
table), from the test data of the JCS reference repository
(github.com/cyberphone/json-canonicalization, testdata/ and its ES6 number
samples), and, for the extra number rows, from V8's ``JSON.stringify``.
"""

from __future__ import annotations

import enum
import json
import re
import struct
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from identity.canonical import CanonicalError, canonicalize, parse_canonical
from identity.errors import IdentityError

MAX_SAFE = 2**53 - 1


def _double(ieee_hex: str) -> float:
    """The IEEE 754 double whose big-endian bits are ``ieee_hex``."""
    return struct.unpack(">d", bytes.fromhex(ieee_hex))[0]


def _code(data: bytes) -> str | None:
    """The CanonicalError code parse_canonical raises for ``data``, or None if it accepts."""
    try:
        parse_canonical(data)
    except CanonicalError as err:
        return err.code
    return None


# --- RFC 8785 Appendix B: number serialization samples -----------------------

APPENDIX_B = [
    ("0000000000000000", "0"),  # Zero
    ("8000000000000000", "0"),  # Minus zero
    ("0000000000000001", "5e-324"),  # Min pos number
    ("8000000000000001", "-5e-324"),  # Min neg number
    ("7fefffffffffffff", "1.7976931348623157e+308"),  # Max pos number
    ("ffefffffffffffff", "-1.7976931348623157e+308"),  # Max neg number
    ("4340000000000000", "9007199254740992"),  # Max pos int (1)
    ("c340000000000000", "-9007199254740992"),  # Max neg int (1)
    ("4430000000000000", "295147905179352830000"),  # ~2**68 (2)
    ("44b52d02c7e14af5", "9.999999999999997e+22"),
    ("44b52d02c7e14af6", "1e+23"),
    ("44b52d02c7e14af7", "1.0000000000000001e+23"),
    ("444b1ae4d6e2ef4e", "999999999999999700000"),
    ("444b1ae4d6e2ef4f", "999999999999999900000"),
    ("444b1ae4d6e2ef50", "1e+21"),
    ("3eb0c6f7a0b5ed8c", "9.999999999999997e-7"),
    ("3eb0c6f7a0b5ed8d", "0.000001"),
    ("41b3de4355555553", "333333333.3333332"),
    ("41b3de4355555554", "333333333.33333325"),
    ("41b3de4355555555", "333333333.3333333"),
    ("41b3de4355555556", "333333333.3333334"),
    ("41b3de4355555557", "333333333.33333343"),
    ("becbf647612f3696", "-0.0000033333333333333333"),
    ("43143ff3c1cb0959", "1424953923781206.2"),  # Round to even (4)
]
APPENDIX_B_ERRORS = ["7fffffffffffffff", "7ff0000000000000"]  # NaN (3), Infinity (3)

# Layout boundaries of Number::toString, checked against V8; the first two are
# from the reference repository's ES6 test file samples.
MORE_NUMBERS = [
    ("4340000000000001", "9007199254740994"),
    ("4340000000000002", "9007199254740996"),
    ("4010000000000000", "4"),
    ("c010000000000000", "-4"),
    ("4415af1d78b58c40", "100000000000000000000"),
    ("4341c37937e08000", "10000000000000000"),
    ("441ac53a7e04bcda", "123456789012345680000"),
    ("3ee4f8b588e368f1", "0.00001"),
    ("3e7ad7f29abcaf48", "1e-7"),
    ("3e8421f5f40d8376", "1.5e-7"),
    ("3ea0c6f7a0b5ed8d", "5e-7"),
    ("3fb999999999999a", "0.1"),
    ("bfe0000000000000", "-0.5"),
    ("4059200000000000", "100.5"),
    ("3f1a36e2eb1c432d", "0.0001"),
    ("3f18e757928e0c9e", "0.000095"),
    ("3f201f31f46ed246", "0.000123"),
    ("7e41eb2d66005835", "1.5e+300"),
    ("7e6ddd4baa009303", "1e+301"),
    ("01bac9a7b3b7302f", "2.5e-300"),
    ("3ff0000000000001", "1.0000000000000002"),
]


@pytest.mark.parametrize(("ieee_hex", "expected"), APPENDIX_B + MORE_NUMBERS)
def test_number_serialization_matches_ecmascript(ieee_hex: str, expected: str) -> None:
    assert canonicalize(_double(ieee_hex)) == expected.encode()


@pytest.mark.parametrize("ieee_hex", APPENDIX_B_ERRORS + ["fff0000000000000", "fff8000000000000"])
def test_nan_and_infinity_are_refused(ieee_hex: str) -> None:
    with pytest.raises(CanonicalError) as caught:
        canonicalize(_double(ieee_hex))
    assert caught.value.code == "not_serializable"


@pytest.mark.parametrize(("ieee_hex", "expected"), APPENDIX_B + MORE_NUMBERS)
def test_canonical_number_tokens_parse(ieee_hex: str, expected: str) -> None:
    [parsed] = parse_canonical(f"[{expected}]".encode())
    assert parsed == _double(ieee_hex)
    # Integers are exact ints only within ±(2**53-1); beyond it JCS reads the double.
    assert type(parsed) is (int if "." not in expected and "e" not in expected and abs(parsed) <= MAX_SAFE else float)


# --- RFC 8785 sections 3.2.2 to 3.2.4 and the reference test data ---------------

RFC_SAMPLE = rb"""{
  "numbers": [333333333.33333329, 1E30, 4.50, 2e-3, 0.000000000000000000000000001],
  "string": "\u20ac$\u000F\u000aA'\u0042\u0022\u005c\\\"\/",
  "literals": [null, true, false]
}"""
RFC_SAMPLE_CANONICAL = bytes.fromhex(
    "7b 22 6c 69 74 65 72 61 6c 73 22 3a 5b 6e 75 6c 6c 2c 74 72"
    "75 65 2c 66 61 6c 73 65 5d 2c 22 6e 75 6d 62 65 72 73 22 3a"
    "5b 33 33 33 33 33 33 33 33 33 2e 33 33 33 33 33 33 33 2c 31"
    "65 2b 33 30 2c 34 2e 35 2c 30 2e 30 30 32 2c 31 65 2d 32 37"
    "5d 2c 22 73 74 72 69 6e 67 22 3a 22 e2 82 ac 24 5c 75 30 30"
    "30 66 5c 6e 41 27 42 5c 22 5c 5c 5c 5c 5c 22 2f 22 7d"
)

RFC_SORTING = rb"""{
  "\u20ac": "Euro Sign",
  "\r": "Carriage Return",
  "\ufb33": "Hebrew Letter Dalet With Dagesh",
  "1": "One",
  "\ud83d\ude00": "Emoji: Grinning Face",
  "\u0080": "Control",
  "\u00f6": "Latin Small Letter O With Diaeresis"
}"""
RFC_SORTED_VALUES = [
    "Carriage Return",
    "One",
    "Control",
    "Latin Small Letter O With Diaeresis",
    "Euro Sign",
    "Emoji: Grinning Face",
    "Hebrew Letter Dalet With Dagesh",
]

# testdata/input and testdata/output of the reference repository.
REFERENCE_TESTDATA = [
    (
        b'{\n  "1": {"f": {"f": "hi","F": 5} ,"\\n": 56.0},\n  "10": { },\n  "": "empty",\n'
        b'  "a": { },\n  "111": [ { } ],\n  "A": { }\n}',
        b'{"":"empty","1":{"\\n":56,"f":{"F":5,"f":"hi"}},"10":{},"111":[{}],"A":{},"a":{}}',
    ),
    (
        b'{\n  "\\u20ac": "Euro Sign",\n  "1": "One",\n  "\\u0080": "Control\\u007f",\n'
        b'  "\\ud83d\\ude02": "Smiley",\n  "\\u00f6": "Latin Small Letter O With Diaeresis",\n'
        b'  "\\ufb33": "Hebrew Letter Dalet With Dagesh",\n  "</script>": "Browser Challenge"\n}\n',
        '{"1":"One","</script>":"Browser Challenge","\u0080":"Control\u007f",'
        '"\u00f6":"Latin Small Letter O With Diaeresis","\u20ac":"Euro Sign","\U0001f602":"Smiley",'
        '"\ufb33":"Hebrew Letter Dalet With Dagesh"}'.encode(),
    ),
]


def test_rfc_sample_canonicalizes_to_the_rfc_bytes() -> None:
    value = json.loads(RFC_SAMPLE)
    assert canonicalize(value) == RFC_SAMPLE_CANONICAL
    assert parse_canonical(RFC_SAMPLE_CANONICAL) == value


def test_rfc_sample_as_sent_is_not_canonical() -> None:
    assert _code(RFC_SAMPLE) == "non_canonical"


def test_rfc_sorting_example_orders_by_utf16_code_units() -> None:
    value = json.loads(RFC_SORTING)
    canonical = canonicalize(value)
    assert list(json.loads(canonical).values()) == RFC_SORTED_VALUES
    assert list(parse_canonical(canonical).values()) == RFC_SORTED_VALUES


@pytest.mark.parametrize(("source", "expected"), REFERENCE_TESTDATA)
def test_reference_testdata(source: bytes, expected: bytes) -> None:
    assert canonicalize(json.loads(source)) == expected
    assert parse_canonical(expected) == json.loads(source)
    assert _code(source) == "non_canonical"


# --- canonicalize: strings, structure, refusals --------------------------------


def test_string_escapes_follow_json_stringify() -> None:
    text = "".join(chr(c) for c in range(0x20)) + '"\\/\x7f\u2028\u2029é€\U0001f600'
    expected = (
        '"\\u0000\\u0001\\u0002\\u0003\\u0004\\u0005\\u0006\\u0007\\b\\t\\n\\u000b\\f\\r\\u000e\\u000f'
        "\\u0010\\u0011\\u0012\\u0013\\u0014\\u0015\\u0016\\u0017\\u0018\\u0019\\u001a\\u001b\\u001c"
        '\\u001d\\u001e\\u001f\\"\\\\/\x7f\u2028\u2029é€\U0001f600"'
    )
    assert canonicalize(text) == expected.encode()
    assert parse_canonical(expected.encode()) == text


def test_structure_literals_and_tuples() -> None:
    value = {"b": [True, False, None], "a": (1, -1, 0.5), "c": {}, "d": []}
    assert canonicalize(value) == b'{"a":[1,-1,0.5],"b":[true,false,null],"c":{},"d":[]}'


def test_int_and_float_subclasses_serialize_as_numbers() -> None:
    class Level(enum.IntEnum):
        HIGH = 3

    class Reading(float):
        def __repr__(self) -> str:
            return "Reading(...)"

    assert canonicalize([Level.HIGH, Reading(2.5), Reading(4.0)]) == b"[3,2.5,4]"


def test_keys_sort_by_utf16_not_code_points() -> None:
    # U+1F600 is the surrogate pair D83D DE00, which sorts before U+E000 and U+FB33.
    value = {"\ufb33": 1, "\U0001f600": 2, "\ue000": 3, "z": 4}
    assert canonicalize(value) == '{"z":4,"\U0001f600":2,"\ue000":3,"\ufb33":1}'.encode()


def test_safe_integer_bounds() -> None:
    assert canonicalize([MAX_SAFE, -MAX_SAFE]) == b"[9007199254740991,-9007199254740991]"
    for big in (MAX_SAFE + 1, -MAX_SAFE - 1, 10**30, 10**5000):
        with pytest.raises(CanonicalError) as caught:
            canonicalize({"amount": big})
        assert caught.value.code == "not_serializable"
        assert '$["amount"]' in str(caught.value)


@pytest.mark.parametrize(
    ("value", "where"),
    [
        ({"a": [1, {"b": float("nan")}]}, '$["a"][1]["b"]'),
        ([float("inf")], "$[0]"),
        ({"x": -float("inf")}, '$["x"]'),
        ({1: "one"}, "$"),
        ({"k": {None: 1}}, '$["k"]'),
        ({(1, 2): 3}, "$"),
        ({"s": "\ud800"}, '$["s"]'),
        ({"\udfff": 1}, "$"),
        ({"b": b"bytes"}, '$["b"]'),
        ({"set": {1}}, '$["set"]'),
        ([object()], "$[0]"),
    ],
)
def test_unrepresentable_values_are_refused_with_their_place(value: Any, where: str) -> None:
    with pytest.raises(CanonicalError) as caught:
        canonicalize(value)
    assert caught.value.code == "not_serializable"
    assert str(caught.value).startswith(f"{where}:")
    assert isinstance(caught.value, IdentityError)


def test_self_containing_value_is_refused() -> None:
    loop: list[Any] = []
    loop.append(loop)
    with pytest.raises(CanonicalError) as caught:
        canonicalize(loop)
    assert caught.value.code == "not_serializable"


# --- parse_canonical: acceptance and refusals ----------------------------------

ACCEPTED = [
    b'{"a":1,"b":[true,false,null],"c":{"d":"e"}}',
    b"[]",
    b"{}",
    b'""',
    b"0",
    b"-1",
    b"1.5",
    b"[9007199254740991,-9007199254740991]",
    b"[123456789012345,1234567890123456]",
    b"[9007199254740992,-9007199254740992,100000000000000000000,12345678901234567000]",
    b"[1e-7,1e+21,0.000001,0.00001,5e-324,1.7976931348623157e+308]",
    b'{"a\\u0000b":"\\b\\f\\n\\r\\t\\"\\\\/\\u001f"}',
    '{"caf\u00e9":"\u20ac","\U0001f600":1,"\ufb33":2}'.encode(),
]

REFUSED = [
    # whitespace
    (b' {"a":1}', "non_canonical"),
    (b'{"a":1} ', "non_canonical"),
    (b'{"a":1}\n', "non_canonical"),
    (b'{"a": 1}', "non_canonical"),
    (b'{"a":1, "b":2}', "non_canonical"),
    (b"[1,\t2]", "non_canonical"),
    # member order and duplicates
    (b'{"b":1,"a":2}', "non_canonical"),
    (b'{"a":1,"a":1}', "non_canonical"),
    (b'{"a":1,"a":2}', "non_canonical"),
    (b'{"a":2,"a":1}', "non_canonical"),
    (b'{"x":{"a":1,"a":1}}', "non_canonical"),
    (b'{"a":1,"b":2,"a":1}', "non_canonical"),
    ('{"\ufb33":2,"\U0001f600":1}'.encode(), "non_canonical"),  # code-point order, not UTF-16
    # number spelling
    (b"1.0", "non_canonical"),
    (b"[4.50]", "non_canonical"),
    (b"[-0]", "non_canonical"),
    (b"[-0.0]", "non_canonical"),
    (b"[0.0]", "non_canonical"),
    (b"[1E5]", "non_canonical"),
    (b"[1e5]", "non_canonical"),
    (b"[1e+5]", "non_canonical"),
    (b"[1.5e2]", "non_canonical"),
    (b"[1e-07]", "non_canonical"),
    (b"[1E-7]", "non_canonical"),
    (b"[0.0000001]", "non_canonical"),
    (b"[1e-6]", "non_canonical"),
    (b"[1e21]", "non_canonical"),
    (b"[1e400]", "non_canonical"),
    (b"[0.10]", "non_canonical"),
    (b"[0.30000000000000004441]", "non_canonical"),
    (b"[333333333.33333329]", "non_canonical"),
    (b"[9007199254740993]", "non_canonical"),
    (b"[-9007199254740993]", "non_canonical"),
    (b"[12345678901234567890]", "non_canonical"),
    (b"[100000000000000000001]", "non_canonical"),
    (b"[1000000000000000000000]", "non_canonical"),
    (b"[" + b"7" * 5000 + b"]", "non_canonical"),
    # string spelling
    (b'"\\u00e9"', "non_canonical"),
    (b'"\\u20ac"', "non_canonical"),
    (b'"\\ud83d\\ude00"', "non_canonical"),
    (b'"\\ud800"', "non_canonical"),
    (b'{"\\ud800":1}', "non_canonical"),
    (b'"\\/"', "non_canonical"),
    (b'"\\u0041"', "non_canonical"),
    (b'"\\u000a"', "non_canonical"),
    (b'"\\u001F"', "non_canonical"),
    (b'{"\\u0061":1}', "non_canonical"),
    # not JSON at all
    (b"NaN", "malformed_json"),
    (b"[Infinity]", "malformed_json"),
    (b'{"a":-Infinity}', "malformed_json"),
    (b'"\xff"', "malformed_json"),
    (b'"\xc3"', "malformed_json"),
    (b'"\xc0\xaf"', "malformed_json"),  # overlong "/"
    (b'"\xed\xa0\x80"', "malformed_json"),  # UTF-8 encoded surrogate
    (b"\xef\xbb\xbf{}", "malformed_json"),  # BOM
    ('"\u00e9"'.encode("utf-16"), "malformed_json"),
    (b"", "malformed_json"),
    (b"{", "malformed_json"),
    (b"[1,]", "malformed_json"),
    (b"{a:1}", "malformed_json"),
    (b"'a'", "malformed_json"),
    (b"01", "malformed_json"),
    (b"[.5]", "malformed_json"),
    (b"[1.]", "malformed_json"),
    (b"+1", "malformed_json"),
    (b"1 2", "malformed_json"),
    (b"{}{}", "malformed_json"),
    (b"tru", "malformed_json"),
    (b'"a\nb"', "malformed_json"),  # raw control character in a string
    (b"[" * 100_000 + b"]" * 100_000, "malformed_json"),
]


@pytest.mark.parametrize("data", ACCEPTED)
def test_parse_canonical_accepts_canonical_bytes(data: bytes) -> None:
    value = parse_canonical(data)
    assert value == json.loads(data, parse_int=_jcs_int)
    assert canonicalize(value) == data


@pytest.mark.parametrize(("data", "code"), REFUSED)
def test_parse_canonical_refuses(data: bytes, code: str) -> None:
    assert _code(data) == code


def test_refusals_say_what_is_wrong() -> None:
    with pytest.raises(CanonicalError, match="byte order mark"):
        parse_canonical(b"\xef\xbb\xbf{}")
    with pytest.raises(CanonicalError, match="not UTF-8"):
        parse_canonical(b'"\xff"')
    with pytest.raises(CanonicalError, match="NaN is not JSON"):
        parse_canonical(b'{"x":NaN}')


def test_parse_canonical_returns_exact_python_types() -> None:
    value = parse_canonical(b'{"big":9007199254740992,"f":2.5,"i":9007199254740991,"t":true}')
    assert type(value["i"]) is int and type(value["f"]) is float and value["t"] is True
    assert type(value["big"]) is float  # beyond ±(2**53-1) a JCS number is only known as a double


# --- properties ----------------------------------------------------------------

KEYS = st.one_of(
    st.text(max_size=6), st.sampled_from(["", "a", "b", "1", "10", "é", "€", "\r", "\ufb33", "\ue000", "\U0001f600"])
)

# Plenty of floats near the layout boundaries, where repr and ECMAScript write
# the same digits differently: tiny, huge, round decimals, integral values.
FINITE = st.one_of(
    st.floats(allow_nan=False, allow_infinity=False),
    st.floats(min_value=1e-9, max_value=1e-3),
    st.floats(min_value=1e14, max_value=1e23),
    st.builds(
        lambda m, e, sign: sign * m * 10.0**e, st.integers(1, 99999), st.integers(-12, 25), st.sampled_from([1, -1])
    ),
)


def json_values(floats: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    """Random JSON-shaped Python values: safe integers, the given floats, any text, nesting."""
    scalars = st.one_of(
        st.none(),
        st.booleans(),
        st.integers(-MAX_SAFE, MAX_SAFE),
        floats,
        st.text(),
        st.sampled_from(["", "é", "\U0001f600", "/"]),
    )
    return _nest(scalars, KEYS)


def _nest(scalars: st.SearchStrategy[Any], keys: st.SearchStrategy[str]) -> st.SearchStrategy[Any]:
    return st.recursive(
        scalars,
        lambda children: st.one_of(st.lists(children, max_size=4), st.dictionaries(keys, children, max_size=4)),
        max_leaves=12,
    )


# Telemetry-like values, which parse_canonical decides on its fast path: small
# numbers, text without astral characters.
BMP_TEXT = st.text(st.characters(max_codepoint=0xFFFF, exclude_categories=["Cs"]), max_size=8)
TYPICAL = _nest(
    st.one_of(
        st.none(), st.booleans(), st.integers(-(10**6), 10**6), st.floats(-1e6, 1e6).filter(lambda x: x % 1), BMP_TEXT
    ),
    BMP_TEXT,
)


class _NotJson(Exception):
    """NaN or Infinity met by the reference parser."""


def _not_json(token: str) -> None:
    raise _NotJson(token)


def _jcs_int(token: str) -> int | float:
    """An integer token as JCS reads it: the double it denotes, kept as an int while that is exact."""
    double = float(token)
    return int(token) if abs(double) <= MAX_SAFE else double


def _reference_code(data: bytes) -> str | None:
    """What parse_canonical must do, by definition: bytes are canonical iff they re-canonicalize to themselves."""
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        return "malformed_json"
    if text.startswith("\ufeff"):
        return "malformed_json"
    try:
        value = json.loads(text, parse_constant=_not_json, parse_int=_jcs_int)
    except (json.JSONDecodeError, _NotJson, RecursionError):
        return "malformed_json"
    try:
        return None if canonicalize(value) == data else "non_canonical"
    except CanonicalError:
        return "non_canonical"


def _check_agrees_with_reference(data: bytes) -> None:
    assert _code(data) == _reference_code(data), data
    if _code(data) is None:
        assert parse_canonical(data) == json.loads(data, parse_int=_jcs_int)


@given(json_values(FINITE))
def test_json_reads_back_what_canonicalize_writes(value: Any) -> None:
    # Every JCS number is an IEEE double, so read numbers back as floats.
    assert json.loads(canonicalize(value), parse_int=float) == value


@given(json_values(FINITE))
def test_canonicalize_is_idempotent(value: Any) -> None:
    canonical = canonicalize(value)
    assert canonicalize(json.loads(canonical, parse_int=float)) == canonical


@given(json_values(FINITE))
def test_parse_canonical_inverts_canonicalize(value: Any) -> None:
    assert parse_canonical(canonicalize(value)) == value


@given(FINITE.filter(bool))
def test_number_layout_is_ecmascript_shaped(value: float) -> None:
    text = canonicalize(value).decode()
    assert float(text) == value
    digits = text.lstrip("-").split("e")[0].replace(".", "").strip("0")
    assert len(digits) == len(repr(abs(value)).split("e")[0].replace(".", "").strip("0"))  # shortest digits
    if 1e-6 <= abs(value) < 1e21:
        assert re.fullmatch(r"-?(0|[1-9][0-9]*)(\.[0-9]*[1-9])?", text), text
    else:
        assert re.fullmatch(r"-?[1-9](\.[0-9]*[1-9])?e[-+][1-9][0-9]*", text), text


@given(st.integers())
def test_integers_outside_the_safe_range_are_refused(value: int) -> None:
    if abs(value) <= MAX_SAFE:
        assert canonicalize(value) == str(value).encode()
    else:
        with pytest.raises(CanonicalError):
            canonicalize(value)


def _utf16_units(text: str) -> list[int]:
    units = []
    for char in text:
        code = ord(char)
        units += [code] if code < 0x10000 else [0xD800 + ((code - 0x10000) >> 10), 0xDC00 + ((code - 0x10000) & 0x3FF)]
    return units


@given(st.dictionaries(KEYS, st.none(), max_size=8))
def test_members_come_out_in_utf16_code_unit_order(value: dict[str, None]) -> None:
    assert list(json.loads(canonicalize(value))) == sorted(value, key=_utf16_units)


@given(
    json_values(FINITE | st.integers()) | TYPICAL,
    st.booleans(),
    st.booleans(),
    st.sampled_from([(",", ":"), (",", ":"), (", ", ": ")]),
    st.sampled_from([None, None, 1]),
)
def test_fast_path_agrees_with_reference_on_json_dumps(
    value: Any, sort_keys: bool, ensure_ascii: bool, separators: tuple[str, str], indent: int | None
) -> None:
    data = json.dumps(value, sort_keys=sort_keys, ensure_ascii=ensure_ascii, separators=separators, indent=indent)
    _check_agrees_with_reference(data.encode())


def _shuffled_canonical(value: Any, rnd: Any, duplicate: bool) -> str:
    """Canonical text of ``value`` except that object members come in a random order, maybe one twice."""
    if isinstance(value, list):
        return "[" + ",".join(_shuffled_canonical(item, rnd, duplicate) for item in value) + "]"
    if isinstance(value, dict):
        members = [canonicalize(k).decode() + ":" + _shuffled_canonical(v, rnd, duplicate) for k, v in value.items()]
        if duplicate and members:
            members.append(rnd.choice(members))
        rnd.shuffle(members)
        return "{" + ",".join(members) + "}"
    return canonicalize(value).decode()


@given(json_values(FINITE) | TYPICAL, st.randoms(use_true_random=False), st.booleans())
def test_fast_path_agrees_with_reference_on_member_order_and_duplicates(value: Any, rnd: Any, duplicate: bool) -> None:
    _check_agrees_with_reference(_shuffled_canonical(value, rnd, duplicate).encode())


NUMBER_TOKENS = st.one_of(
    st.from_regex(r"-?(0|[1-9][0-9]{0,22})(\.[0-9]{1,20})?([eE][-+]?[0-9]{1,3})?", fullmatch=True),
    FINITE.map(lambda x: canonicalize(x).decode()),
    FINITE.map(repr),
    st.integers().map(str),
)


def _spellings(char: str) -> list[str]:
    """Every JSON spelling of one character, the canonical one first."""
    canonical = json.dumps(char, ensure_ascii=False)[1:-1]
    units = _utf16_units(char)
    spellings = [canonical, "".join(f"\\u{u:04x}" for u in units), "".join(f"\\u{u:04X}" for u in units)]
    if char == "/":
        spellings.append("\\/")
    return spellings


@st.composite
def string_tokens(draw: st.DrawFn) -> str:
    """A JSON string token for random text, each character spelled one of its valid ways."""
    text = draw(st.text(max_size=5) | st.sampled_from(["/", "é", "\U0001f600", "\x1f", "\ufb33"]))
    return '"' + "".join(draw(st.sampled_from(_spellings(c))) for c in text) + '"'


@st.composite
def json_texts(draw: st.DrawFn, depth: int = 0) -> str:
    """Random JSON text, often near-canonical: random spellings, member order, duplicates, whitespace."""
    space = draw(st.sampled_from(["", "", "", "", "", " ", "\n"]))
    kind = draw(st.integers(0, 5 if depth < 3 else 3))
    if kind == 0:
        token = draw(st.sampled_from(["null", "true", "false"]))
    elif kind == 1:
        token = draw(NUMBER_TOKENS)
    elif kind == 2:
        token = draw(string_tokens())
    elif kind == 3:
        token = draw(st.sampled_from(["[]", "{}"]))
    elif kind == 4:
        items = draw(st.lists(json_texts(depth + 1), max_size=3))
        token = "[" + ",".join(items) + "]"
    else:
        names = draw(st.lists(st.sampled_from(["a", "b", "é", "\ufb33", "\U0001f600", "1"]), max_size=4))
        if draw(st.booleans()):
            names.sort(key=_utf16_units)
        members = [draw(string_tokens() | st.just(json.dumps(n, ensure_ascii=False))) for n in names]
        token = "{" + ",".join(m + ":" + draw(json_texts(depth + 1)) for m in members) + "}"
    return space + token if draw(st.booleans()) else token + space


@given(json_texts())
def test_fast_path_agrees_with_reference_on_random_json_text(text: str) -> None:
    _check_agrees_with_reference(text.encode())


@given(NUMBER_TOKENS)
def test_fast_path_agrees_with_reference_on_number_spellings(token: str) -> None:
    _check_agrees_with_reference(token.encode())
    _check_agrees_with_reference(f'{{"n":[{token}]}}'.encode())


@given(json_values(FINITE) | TYPICAL, st.data())
def test_fast_path_agrees_with_reference_on_an_inserted_byte(value: Any, data: st.DataObject) -> None:
    canonical = canonicalize(value)
    at = data.draw(st.integers(0, len(canonical)))
    extra = data.draw(st.sampled_from([b" ", b"\n", b",", b"0", b".0", b"e1", b"\\", b"\xff"]))
    _check_agrees_with_reference(canonical[:at] + extra + canonical[at:])


@given(st.binary(max_size=40))
def test_arbitrary_bytes_only_ever_raise_canonical_error(data: bytes) -> None:
    _check_agrees_with_reference(data)


@given(st.one_of(json_values(FINITE), TYPICAL))
def test_the_fast_serializer_writes_the_reference_bytes(value: Any) -> None:
    from identity.canonical import _canonicalize_reference

    assert canonicalize(value) == _canonicalize_reference(value)


@pytest.mark.parametrize("value", [{"x": float("nan")}, [float("inf")], {"t": -float("inf")}])
def test_the_fast_serializer_does_not_write_null_for_a_non_number(value: Any) -> None:
    with pytest.raises(CanonicalError) as refused:
        canonicalize(value)
    assert refused.value.code == "not_serializable"


@pytest.mark.parametrize("value", [
    {"a": 2.0, "b": [0.0, -0.0, 1.5, -3.0, 1e20, -0.05]}, {"s": "x:1.0,"}, {"k.0,": 1.0}, [-0.0], ["1.0]", 1.0],
    {"t": -0.05, "u": -10.0}, 7.0,
])
def test_integral_floats_and_look_alikes_in_strings(value: Any) -> None:
    from identity.canonical import _canonicalize_reference

    assert canonicalize(value) == _canonicalize_reference(value)

"""Unit tests: AttributeValue rules, number normalization, key encoding and routing."""

import base64
import random
from decimal import Decimal

import orjson
import pytest
from hypothesis import given, strategies as st

from shardserver.errors import SerializationException, ValidationException
from shardserver.shard import routing, values


def test_number_order_encoding_matches_numeric_order():
    rng = random.Random(7)
    numbers = ["0", "-0", "1", "-1", "1E125", "-1E125", "1E-130", "-1E-130", "9.99", "10", "-9.99", "-10"]
    numbers += [f"{rng.choice('-+')}{rng.randint(0, 10**rng.randint(1, 30))}E{rng.randint(-90, 90)}"
                for _ in range(300)]
    numbers = [values.normalize_number(n) for n in numbers]
    by_bytes = sorted(numbers, key=values.encode_number_ordered)
    by_value = sorted(numbers, key=Decimal)
    assert [Decimal(n) for n in by_bytes] == [Decimal(n) for n in by_value]


def test_integer_sort_encoding_is_the_general_one():
    # A plain integer takes a shortcut; the same number written with a fraction takes the general path.
    rng = random.Random(3)
    integers = ["0", "00", "7", "10", "120", "000120", "1" + "0" * 60, "9" * 38]
    integers += [str(rng.randrange(10 ** rng.randrange(1, 40))) + "0" * rng.randrange(4) for _ in range(300)]
    for text in integers:
        assert values.encode_number_ordered(text) == values.encode_number_ordered(text + ".0"), text


def test_plain_decimal_normalization_is_the_general_one():
    # Short plain decimals take a shortcut; the general path is digits, exponent, magnitude, then _plain.
    def general(text):
        try:
            sign, digits, exponent = values._digits_exponent(text)
            values._check_magnitude(digits, exponent)
            return values._plain(sign, digits, exponent)
        except ValidationException as error:
            return error.message

    def normalized(text):
        try:
            return values.normalize_number(text)
        except ValidationException as error:
            return error.message

    rng = random.Random(9)
    texts = ["0.0", "-0.0", "00.00", ".5", "-.5", "5.", "-5.", ".", "-.", "-", "+1.5", "1.5.3", "--1.5", "1_0.5",
             "129.950", "0.050", "100.0", "-1.50", "0." + "0" * 37 + "1", "1" * 19 + "." + "1" * 19, "9" * 38 + "."]
    for _ in range(3000):
        whole = "".join(rng.choice("0000123456789") for _ in range(rng.randrange(0, 22)))
        fraction = "".join(rng.choice("0000123456789") for _ in range(rng.randrange(0, 22)))
        texts.append(rng.choice(["", "", "-", "+"]) + whole + rng.choice([".", ".", ""]) + fraction)
    for text in texts:
        assert normalized(text) == general(text), text


@given(st.decimals(allow_nan=False, allow_infinity=False, places=None).filter(
    lambda d: d == 0 or -130 <= d.adjusted() <= 125))
def test_normalize_keeps_value(d):
    digits = len(d.as_tuple().digits)
    try:
        text = values.normalize_number(str(d))
    except ValidationException:
        assert len(str(d.normalize()).replace("-", "").replace(".", "").split("E")[0].strip("0")) > 38 or digits > 38
        return
    assert Decimal(text) == d


def test_tokens_spread_round_robin():
    # neighbouring tokens alternate between shards
    step = 1 << (64 - routing.IGNORE_MSB - 1)
    owners = [routing.shard_of_token(-2**63 + i * step, 2) for i in range(8)]
    assert owners == [0, 1, 0, 1, 0, 1, 0, 1]


def test_owner_is_scyllas_formula():
    # Scylla's sharder: bias the token to unsigned, drop the 12 high bits, scale into [0, N).
    rng = random.Random(11)
    tokens = [-2**63, -2**63 + 1, -1, 0, 1, 2**52 - 1, 2**52, 2**63 - 1]
    tokens += [rng.randrange(-2**63, 2**63) for _ in range(3000)]
    for nshards in (1, 2, 3, 7, 8, 64, 255):
        for token in tokens:
            expected = ((((token + 2**63) << 12) % 2**64) * nshards) >> 64
            assert routing.shard_of_token(token, nshards) == expected, (token, nshards)


def test_every_key_has_one_owner_and_all_shards_used():
    for n in (1, 2, 3, 8, 64):
        owners = {routing.shard_of_key({"S": f"k{i}"}, n)[0] for i in range(2000)}
        assert owners == set(range(n))


def test_segments_partition_the_ring():
    for total in (1, 2, 3, 7, 1000, 1_000_000):
        previous_end = 0
        for segment in (0, 1, total // 2, total - 1):
            start, end = routing.segment_bounds(segment, total)
            assert start < end
        assert routing.segment_bounds(0, total)[0] == 0
        assert routing.segment_bounds(total - 1, total)[1] == 1 << 64
        for segment in range(min(total, 50)):
            start, end = routing.segment_bounds(segment, total)
            assert start == previous_end
            previous_end = end


def test_storage_keys_sort_inside_partition():
    pk = {"S": "p"}
    sort_keys = [{"N": n} for n in ("-5", "-1.5", "0", "2", "10")]
    encoded = [values.encode_key(pk, sk) for sk in sort_keys]
    assert encoded == sorted(encoded)
    strings = [{"S": s} for s in ("", "a", "a\x00", "ab", "b")]
    encoded = [values.encode_key(pk, sk) for sk in strings]
    assert encoded == sorted(encoded)
    assert all(e.startswith(values.partition_prefix(pk)) for e in encoded)


def test_item_size_rules():
    assert values.item_size({"a": {"S": "abc"}}) == 4
    assert values.item_size({"ab": {"N": "123"}}) == 2 + 3
    assert values.item_size({"l": {"L": []}}) == 1 + 3
    assert values.item_size({"m": {"M": {"x": {"BOOL": True}}}}) == 1 + 3 + 1 + 1 + 1


_numbers = st.builds(lambda digits, power: values.normalize_number(f"{digits}E{power}"),
                     st.integers(-10 ** 38 + 1, 10 ** 38 - 1), st.integers(-90, 80))
_binaries = st.binary(max_size=40).map(lambda b: base64.b64encode(b).decode())
_scalars = st.one_of(
    st.text(max_size=20).map(lambda t: {"S": t}),      # any unicode, control characters escaped
    _numbers.map(lambda n: {"N": n}),
    _binaries.map(lambda b: {"B": b}),
    st.booleans().map(lambda b: {"BOOL": b}),
    st.just({"NULL": True}),
    st.lists(st.text(max_size=8), min_size=1, max_size=5, unique=True).map(lambda v: {"SS": v}),
    st.lists(_numbers, min_size=1, max_size=5, unique=True).map(lambda v: {"NS": v}),
    st.lists(_binaries, min_size=1, max_size=5, unique=True).map(lambda v: {"BS": v}))
_values = st.recursive(_scalars, lambda inner: st.one_of(
    st.lists(inner, max_size=4).map(lambda v: {"L": v}),
    st.dictionaries(st.text(min_size=1, max_size=6), inner, max_size=4).map(lambda v: {"M": v})), max_leaves=12)


@given(st.dictionaries(st.text(min_size=1, max_size=6), _values, min_size=1, max_size=6))
def test_stored_json_is_never_shorter_than_item_size(item):
    # Pages, batch reads and the 400 KB check count the stored JSON until it passes their limit.
    assert len(orjson.dumps(item)) >= values.item_size(item)


def test_stored_json_is_not_shorter_for_the_tightest_values():
    for item in ({"a": {"L": []}}, {"a": {"M": {}}}, {"a": {"B": ""}}, {"a": {"N": "1E+125"}},
                 {"\u00e9": {"S": "\U0001f600" * 3}}, {"a": {"L": [{"L": []}, {"M": {"b": {"M": {}}}}]}}):
        assert len(orjson.dumps(item)) >= values.item_size(item)


@pytest.mark.parametrize("av", [{}, {"S": "a", "N": "1"}, {"NULL": False}, {"BOOL": "yes"}, {"SS": []},
                                {"NS": ["1", "x"]}, {"B": "***"}, {"XX": 1}, {"L": {}}, {"M": []}])
def test_invalid_values(av):
    with pytest.raises(ValidationException):
        values.validate_value(av)


@pytest.mark.parametrize("av", [{"N": 123}, {"N": 1.5}, {"S": 7}, {"S": True}, {"B": ["x"]}, {"N": {"x": 1}}])
def test_non_string_json_in_a_string_member_is_a_serialization_error(av):
    # DynamoDB's deserializer refuses these before its validator sees them.
    with pytest.raises(SerializationException):
        values.validate_value(av)

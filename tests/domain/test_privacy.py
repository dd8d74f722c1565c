"""Privacy: redaction, size limits, clean strings and client address modes."""

from __future__ import annotations

import json
import typing as t

import pytest

from conftest import Bundle, MakeApp
from flask_telemetry import ConfigVars, EventType, TelemetryError
from flask_telemetry.domain.privacy import (
    MAX_DEPTH,
    REDACTED,
    TOO_DEEP,
    Privacy,
    _NotJSON,
    _TooBig,
    _Walk,
)
from flask_telemetry.storage.row import JsonText


def _record(bundle: Bundle, **kwargs: t.Any) -> None:
    with bundle.app.app_context():
        bundle.telemetry.record(EventType.CACHE_MISS, **kwargs)


def test_secret_keys_are_redacted_at_any_depth(bundle: Bundle) -> None:
    metadata = {
        "user": "ann",
        "Password": "hunter2",
        "nested": {"deeper": [{"X-API-Key": "k-123", "ok": 1}], "SessionId": "s-9"},
        "headers": {"Authorization": {"scheme": "Bearer", "value": "t-1"}},
        "access_token": ["a", "b"],
        "creditCard": 4111111111111111,
    }
    _record(bundle, metadata=metadata)
    (row,) = bundle.rows()
    assert row.metadata == {
        "user": "ann",
        "Password": REDACTED,
        "nested": {"deeper": [{"X-API-Key": REDACTED, "ok": 1}], "SessionId": REDACTED},
        "headers": {"Authorization": REDACTED},
        "access_token": REDACTED,
        "creditCard": REDACTED,
    }
    stored = json.dumps(row.metadata)
    for secret in ("hunter2", "k-123", "s-9", "t-1", "4111111111111111"):
        assert secret not in stored
    assert metadata["Password"] == "hunter2"  # the caller's dict is untouched


def test_redact_keys_are_configurable(make_app: MakeApp) -> None:
    bundle = make_app(**{ConfigVars.REDACT_KEYS: ["SSN", "pin_code"]})
    _record(bundle, metadata={"ssn": "1", "user_PIN-code": "2", "password": "3"})
    (row,) = bundle.rows()
    assert row.metadata == {"ssn": REDACTED, "user_PIN-code": REDACTED, "password": "3"}


def test_redaction_happens_before_the_queue_in_async_mode(make_app: MakeApp) -> None:
    bundle = make_app(**{ConfigVars.DELIVERY: "async"})
    inner = {"token": "t-1", "n": 1}
    with bundle.app.app_context():
        bundle.telemetry.record(EventType.CACHE_MISS, metadata={"inner": inner})
        inner["token"] = "changed-after-record"
        inner["n"] = 2
    (row,) = bundle.rows()
    assert row.metadata == {"inner": {"token": REDACTED, "n": 1}}


def test_oversized_metadata_becomes_a_marker_with_its_size(make_app: MakeApp) -> None:
    bundle = make_app(**{ConfigVars.METADATA_MAX_BYTES: 1024})
    big = {"blob": "é" * 2000}
    _record(bundle, metadata=big)
    _record(bundle, metadata={"small": "x" * 900})
    marker, small = bundle.rows()
    # The walk stops as soon as the size is over the limit: here at the
    # string, whose length alone is too much, before reading it.
    assert marker.metadata == {
        "metadata_truncated": True,
        "original_bytes_at_least": 2 + len('"blob"') + 2 + 2000 + 2,
        "max_bytes": 1024,
    }
    assert small.metadata == {"small": "x" * 900}


def test_metadata_size_is_counted_exactly() -> None:
    privacy = Privacy(max_bytes=10**9)
    samples: list[dict[t.Any, t.Any]] = [
        {},
        {"a": 1, "b": [1, 2.5, None, True, False], "c": {"d": 'e"\\\n\t'}},
        {"ü": "日本語", "emoji": "🚀", 1: "int key", None: "none key", 2.5: [[], {}]},
    ]
    for sample in samples:
        clean = privacy.metadata(sample)
        size = len(json.dumps(clean, ensure_ascii=False).encode())
        # The limit is inclusive, to the byte.
        assert Privacy(max_bytes=size).metadata(sample) == clean
        marker = Privacy(max_bytes=size - 1).metadata(sample)
        assert size <= marker["original_bytes_at_least"] <= size + 5


@pytest.mark.parametrize(
    "sample",
    [
        {},
        {"key": "user:42"},
        {"a": 1, "b": -2.5, "c": None, "d": True, "e": False, "f": ""},
        {"Password": "hunter2", "user": "ann", "api key": "k"},
        {'q"uote': 'back\\slash "x"', "ü": "日本語🚀", "n": 10**17},
        {"a": "x" * 200, "b": 'y"' * 40, "c": 1.5e-300, "d": None},
        {"ü" * 100: "é" * 100, "token": "t" * 200},
        {f"k{i}": "v" * 256 for i in range(32)},  # over 8 KiB: the marker
        {"tab": "a\tb"},  # not printable: cleaned by the walk
        {"big": 10**30, "nan": float("nan")},
        {"x" * 257: 1},
        {f"k{i}": i for i in range(33)},
    ],
)
def test_small_flat_metadata_is_cleaned_and_sized_as_nested_metadata_is(
    sample: dict[str, t.Any],
) -> None:
    """A small flat dict skips the walk: the same copy, the same limit."""
    privacy = Privacy()
    try:
        clean = privacy.metadata(sample)
    except TelemetryError:
        with pytest.raises(TelemetryError):
            privacy.metadata({"m": sample})
        return
    assert clean is not sample
    if "metadata_truncated" in clean:
        assert clean["original_bytes_at_least"] > privacy.max_bytes
        assert "metadata_truncated" in privacy.metadata({"m": sample})
        return
    # Nested, the same dict goes through the walk.
    assert privacy.metadata({"m": sample}) == {"m": clean}
    size = len(json.dumps(clean, ensure_ascii=False).encode())
    if size >= 256:
        assert Privacy(max_bytes=size).metadata(sample) == clean
        marker = Privacy(max_bytes=size - 1).metadata(sample)
        assert size <= marker["original_bytes_at_least"] <= size + 5


def test_deep_nesting_is_cut_and_non_json_is_dropped(bundle: Bundle) -> None:
    deep: dict[str, t.Any] = {}
    node = deep
    for _ in range(500):
        node["d"] = {}
        node = node["d"]
    cycle: dict[str, t.Any] = {"a": 1}
    cycle["self"] = cycle
    _record(bundle, metadata=deep)
    _record(bundle, metadata=cycle)
    _record(bundle, metadata={"b": b"bytes"})
    _record(bundle, metadata={"n": float("nan")})
    _record(bundle, metadata={(1, 2): "tuple key"})
    _record(bundle, metadata={2: "two", False: "no", None: "none"})
    rows = bundle.rows()
    assert len(rows) == 2
    depth, node = 0, rows[0].metadata
    while isinstance(node, dict):
        depth, node = depth + 1, node["d"]
    assert (depth, node) == (MAX_DEPTH, TOO_DEEP)
    assert rows[1].metadata == {"2": "two", "false": "no", "null": "none"}
    with bundle.app.app_context():
        assert bundle.telemetry.stats()["dropped"]["invalid"] == 4


def test_control_characters_are_removed_and_strings_cut(bundle: Bundle) -> None:
    @bundle.app.get("/ua")
    def ua() -> str:
        bundle.telemetry.record(
            EventType.CACHE_MISS, metadata={"k\x00ey": "va\x00l\x1bue\nline\ud800"}
        )
        return "ok"

    hostile = "Mozilla\x00/5.0\r\n\x1b[31m" + "A" * 600 + "\xff\xfe"
    bundle.client().get("/ua", environ_overrides={"HTTP_USER_AGENT": hostile})
    miss, end = bundle.rows()
    assert miss.metadata == {"key": "value\nline"}
    for row in (miss, end):
        assert row.user_agent.startswith("Mozilla/5.0[31mAAA")
        assert len(row.user_agent) == 512
        assert not any(ord(c) < 32 or 0x7F <= ord(c) <= 0x9F for c in row.user_agent)


def test_user_agent_is_read_as_utf8(bundle: Bundle) -> None:
    @bundle.app.get("/")
    def index() -> str:
        return "ok"

    raw = "Café/1.0 ".encode().decode("latin-1") + "\xf0\x28"  # invalid UTF-8 tail
    bundle.client().get("/", environ_overrides={"HTTP_USER_AGENT": raw})
    (row,) = bundle.rows()
    assert row.user_agent == "Café/1.0 \ufffd("


@pytest.mark.parametrize(
    ("mode", "address", "stored"),
    [
        ("full", "203.0.113.77", "203.0.113.77"),
        ("truncate", "203.0.113.77", "203.0.113.0"),
        ("truncate", "2001:db8:abcd:12:1:2:3:4", "2001:db8:abcd::"),
        ("truncate", "::ffff:198.51.100.9", "198.51.100.0"),
        ("truncate", "not an address", None),
        ("none", "203.0.113.77", None),
    ],
)
def test_ip_modes(
    make_app: MakeApp, mode: str, address: str, stored: str | None
) -> None:
    bundle = make_app(**{ConfigVars.IP_MODE: mode})

    @bundle.app.get("/")
    def index() -> str:
        return "ok"

    bundle.client().get("/", environ_overrides={"REMOTE_ADDR": address})
    (row,) = bundle.rows()
    assert row.ip_address == stored


def test_ip_hash_is_keyed(make_app: MakeApp) -> None:
    def stored(key: str, address: str) -> str:
        bundle = make_app(**{ConfigVars.IP_MODE: "hash", ConfigVars.IP_HASH_KEY: key})

        @bundle.app.get("/")
        def index() -> str:
            return "ok"

        bundle.client().get("/", environ_overrides={"REMOTE_ADDR": address})
        ip: str = bundle.rows()[-1].ip_address
        with bundle.app.app_context():
            bundle.db.drop_all()
        return ip

    first = stored("key-one", "203.0.113.77")
    assert len(first) == 32
    assert set(first) <= set("0123456789abcdef")
    assert "203.0.113" not in first
    assert stored("key-one", "203.0.113.77") == first
    assert stored("key-two", "203.0.113.77") != first
    assert stored("key-one", "203.0.113.78") != first


def test_proxy_headers_are_not_trusted(bundle: Bundle) -> None:
    @bundle.app.get("/")
    def index() -> str:
        return "ok"

    bundle.client().get(
        "/",
        headers={"X-Forwarded-For": "198.51.100.1", "X-Real-IP": "198.51.100.2"},
        environ_overrides={"REMOTE_ADDR": "203.0.113.5"},
    )
    (row,) = bundle.rows()
    assert row.ip_address == "203.0.113.5"


#: Metadata shapes whose walk cost milliseconds when every container, key
#: and item was one step of the walk (issue 21, §5); each is at most a few
#: KiB of JSON.
COSTLY_SHAPES: dict[str, dict[t.Any, t.Any]] = {
    "2,041 empty dicts": {"l": [{} for _ in range(2041)]},
    "2,041 empty lists": {"l": [[] for _ in range(2041)]},
    "580 int keys": {i: 0 for i in range(580)},
    "1,600 ints, over the cap": {"l": list(range(1600))},
    "1,000 short strings": {"l": ["ab"] * 1000},
    "numbers, booleans and None": {"l": [1, 2.5, True, None] * 400},
    # Containers of containers: copied by the C encoder and decoder.
    "580 int keys and values": {i: i for i in range(580)},
    "900 one-item dicts": {"l": [{"": 0}] * 900},
    "800 one-item lists": {"l": [[1]] * 800},
    "1,000 lists of an empty list": {"l": [[[]]] * 1000},
    "400 dicts six deep": {"l": [[[[[[{}]]]]]] * 400},
    "200 small dicts": {"l": [{"a": 1, "b": "x", "c": [2.5, None]}] * 200},
    "mixed list": {"l": [1, "a", None, {}, [], (), 2.5] * 200},
}


@pytest.mark.parametrize("name", list(COSTLY_SHAPES))
def test_the_walk_takes_a_few_steps_for_many_small_items(name: str) -> None:
    """Counted in Python function calls, not in time: the lists and dicts
    above are checked by a few calls into C, not one walk step per item."""
    import gc
    import sys

    metadata = COSTLY_SHAPES[name]
    privacy = Privacy()
    expected = json.loads(json.dumps(metadata))  # int keys made strings
    privacy.metadata(metadata)  # fills the key cache
    calls = 0

    def count(frame: t.Any, event: str, arg: t.Any) -> None:
        nonlocal calls
        if event == "call":
            calls += 1

    gc.collect()  # no finalizer of an earlier test runs while counting
    gc.disable()
    sys.setprofile(count)
    try:
        clean = privacy.metadata(metadata)
    finally:
        sys.setprofile(None)
        gc.enable()
    assert calls <= 12, calls
    if "metadata_truncated" in clean:
        assert clean["original_bytes_at_least"] > privacy.max_bytes
    else:
        assert clean == expected
        size = len(json.dumps(clean, ensure_ascii=False).encode())
        assert Privacy(max_bytes=size).metadata(metadata) == clean
        marker = Privacy(max_bytes=size - 1).metadata(metadata)
        assert marker["original_bytes_at_least"] >= size


def test_lists_the_walk_checks_at_once_keep_its_rules() -> None:
    privacy = Privacy()
    with pytest.raises(TelemetryError, match="nan"):
        privacy.metadata({"l": [1.0, float("nan")]})
    with pytest.raises(TelemetryError, match="inf"):
        privacy.metadata({"l": [1, None, float("inf")]})
    assert privacy.metadata({"l": ["a\x00b", "c"]}) == {"l": ["ab", "c"]}
    assert privacy.metadata({"l": (1, 2)}) == {"l": [1, 2]}
    big = privacy.metadata({"l": [1, 10**9000]})
    assert big["metadata_truncated"] is True
    # Empty containers at the depth limit: the same as the walk makes them
    # (a third item of another kind keeps that list on the walk).
    for levels in range(MAX_DEPTH - 3, MAX_DEPTH + 1):
        fast: t.Any = {"l": [{}, []]}
        walked: t.Any = {"l": [{}, [], 0]}
        for _ in range(levels):
            fast, walked = {"d": fast}, {"d": walked}
        fast, walked = privacy.metadata(fast), privacy.metadata(walked)
        while "d" in fast:
            fast, walked = fast["d"], walked["d"]
        if fast == TOO_DEEP:
            assert walked == TOO_DEEP
            continue
        lists = fast["l"], walked["l"]
        assert lists[0] == (lists[1][:2] if isinstance(lists[1], list) else lists[1])


def _walk_only(privacy: Privacy, metadata: t.Any) -> t.Any:
    """What the walk alone makes of ``metadata`` (without the encoded copy)."""
    walk = _Walk(privacy, privacy.max_bytes)
    try:
        return walk.mapping(metadata, 0)
    except _TooBig:
        return "too big"
    except _NotJSON:
        return "not JSON"


def _json_strategies() -> t.Any:
    from hypothesis import strategies as st

    text = (
        st.text(st.characters(codec=None, exclude_categories=()), max_size=6)
        | st.text(st.characters(categories=["L", "N", "P", "S", "Zs"]), max_size=6)
        | st.text("abcdefghijklmnopqrstuvwxyz _-", max_size=12)
    ) | st.sampled_from(
        [
            "password",
            "Pass Word",
            "tok\ten",
            "p\u0430ssword",
            "x\x00y",
            "a\\b",
            'q"q',
            "\u0085",
            "\ud800",
            "user",
            "1",
            "é",
            "\u202e",
            ": x",
        ]
    )
    # Mostly what the encoded copy takes, some of what it leaves to the walk.
    keys = st.one_of(
        text,
        text,
        text,
        st.integers(-(10**6), 10**6),
        st.integers(-(10**20), 10**20) | st.booleans() | st.none() | st.floats(),
    )
    leaves = st.one_of(
        text,
        text,
        st.integers(-(10**6), 10**6),
        st.integers(-(10**25), 10**25),
        st.floats(allow_nan=False, allow_infinity=False),
        st.floats(),
        st.booleans(),
        st.none(),
    )
    values = st.recursive(
        leaves,
        lambda inner: (
            st.lists(inner, max_size=5)
            | st.lists(inner, max_size=3).map(tuple)
            | st.dictionaries(keys, inner, max_size=4)
        ),
        max_leaves=40,
    )
    return st.dictionaries(keys, values, max_size=5), st.sampled_from([40, 200, 8192])


def test_the_encoded_copy_is_what_the_walk_makes() -> None:
    """Metadata the C encoder copies (Privacy._encoded) is, to the byte,
    what the walk makes of it; anything else is left to the walk."""
    from hypothesis import given, settings

    metadata_strategy, limits = _json_strategies()

    @settings(max_examples=600, deadline=None, derandomize=True)
    @given(metadata_strategy, limits)
    def check(metadata: dict[t.Any, t.Any], limit: int) -> None:
        privacy = Privacy(max_bytes=limit)
        fast = privacy._encoded(metadata)
        walked = _walk_only(privacy, metadata)
        if fast is None:
            return
        assert isinstance(walked, dict)
        assert json.dumps(fast, ensure_ascii=False) == json.dumps(
            walked, ensure_ascii=False
        )
        assert fast == walked

    check()


@pytest.mark.parametrize("name", list(COSTLY_SHAPES))
def test_costly_shapes_under_the_cap_take_the_encoded_copy(name: str) -> None:
    metadata = COSTLY_SHAPES[name]
    privacy = Privacy()
    walked = _walk_only(privacy, metadata)
    fast = privacy._encoded(metadata)
    if walked == "too big":
        assert fast is None
    else:
        assert fast is not None
        assert fast == walked
        assert json.dumps(fast) == json.dumps(walked)
        fast["l" if "l" in fast else "0"] = "changed"  # a copy: nothing shared
        assert privacy._encoded(metadata) == walked


def test_the_encoded_copy_changes_what_the_walk_changes() -> None:
    """Redaction and the characters the walk removes from values are done
    on the encoded text: the copy is the walk's, to the byte."""
    privacy = Privacy()
    many = [{"": 0}] * 300
    for metadata in (
        {"l": many, "x": {"Password": 1}},  # a key to redact
        {"l": many, "x": {"pass\tword": 1}},  # skeleton of an escaped key
        {"l": many, "x": {"p\u0430ssword": 1}},  # non-ASCII skeleton
        {"l": many, "x": "a\x00b"},  # a control character to remove
        {"l": many, "x": "a\x85b"},  # a C1 control
        {"l": many, "x": "\ud800"},  # a lone surrogate
        {"l": many, "x": {"token": {"password": [1, {"a": "b"}]}}, "y": "\x01"},
    ):
        walked = _walk_only(privacy, metadata)
        assert privacy._encoded(metadata) == walked, metadata
        stored = privacy.stored(metadata)
        assert type(stored) is JsonText
        assert stored == json.dumps(walked, ensure_ascii=False)


def test_the_encoded_copy_leaves_to_the_walk_what_it_refuses() -> None:
    privacy = Privacy()
    many = [{"": 0}] * 300
    for metadata in (
        {"l": many, "x": {"a\x00b": 1}},  # a key the walk changes
        {"l": many, "x": "a\\b\x00"},  # an escaped backslash and a control
        {"l": many, "x": {1: 1, "1": 2}},  # the same key once printed
        {"l": many, "x": 10**20},  # an int the walk prints with care
        {"l": many, "x": float("nan")},
        {"l": many, "x": {True: 1}},  # keys other than str and int
        {"l": many, "x": b"bytes"},
    ):
        assert privacy._encoded(metadata) is None, metadata
    deep: t.Any = {}
    for _ in range(MAX_DEPTH):
        deep = {"d": [deep]}
    assert privacy._encoded(deep) is None
    cycle: list[t.Any] = []
    cycle.append(cycle)
    assert privacy._encoded({"c": cycle}) is None
    # Shared lists whose JSON would be astronomically long: refused from
    # the counts, before any encoding.
    shared: t.Any = [0] * 100
    for _ in range(6):
        shared = [shared] * 100
    assert privacy._encoded({"s": shared}) is None
    assert privacy.metadata({"s": shared})["metadata_truncated"] is True

"""Metadata queued as its JSON text: the encoded copy (domain/encoded.py)
made once on the request thread, counted by its length in the queue and
bound by the writer as it is, on every database."""

from __future__ import annotations

import json
import sys
import typing as t

import pytest

from conftest import MakeApp
from flask_telemetry import EventType
from flask_telemetry.domain import encoded
from flask_telemetry.domain.delivery.size import pending_bytes
from flask_telemetry.domain.mapping import pending
from flask_telemetry.domain.privacy import REDACTED, Privacy, _Walk
from flask_telemetry.storage.row import JsonText

#: Shapes the encoded copy takes: containers of containers, many items.
SHAPES: dict[str, dict[t.Any, t.Any]] = {
    "2,041 empty dicts": {"l": [{} for _ in range(2041)]},
    "580 int keys and values": {i: i for i in range(580)},
    "900 one-item dicts": {"l": [{"": 0}] * 900},
    "400 dicts six deep": {"l": [[[[[[{}]]]]]] * 400},
    "unicode and escapes": {"ü": ["日本語🚀", 'q"uote', "back\\slash", "a\tb"] * 40},
}


def _dumped(value: object) -> str:
    return json.dumps(value, ensure_ascii=False)


@pytest.mark.parametrize("name", list(SHAPES))
def test_stored_is_the_text_of_the_copy(name: str) -> None:
    privacy = Privacy()
    stored = privacy.stored(SHAPES[name])
    assert type(stored) is JsonText
    clean = privacy.metadata(SHAPES[name])
    assert stored == _dumped(clean)  # the text is the copy, to the byte
    assert json.loads(stored) == clean


def test_small_flat_metadata_stays_a_dict() -> None:
    stored = Privacy().stored({"key": "catalogue", "n": 3, "ok": True})
    assert type(stored) is dict


def test_too_big_for_the_encoded_copy_gives_its_exact_size() -> None:
    metadata = {"l": list(range(1600))}
    exact = len(_dumped(metadata).encode())
    marker = Privacy().stored(metadata)
    assert marker == {
        "metadata_truncated": True,
        "original_bytes_at_least": exact,
        "max_bytes": 8192,
    }
    # One byte under the size: the marker; at the size: the text.
    assert Privacy(max_bytes=exact - 1).stored(metadata)["metadata_truncated"]  # type: ignore[index]
    assert Privacy(max_bytes=exact).stored(metadata) == _dumped(metadata)


@pytest.mark.parametrize(
    "key",
    [
        "password",
        "Pass Word",
        'pass"word',  # an escaped quote inside the key
        "pass\\word",  # an escaped backslash
        "pass\nword",  # an escape the skeleton drops
        "p\u0430ssword",  # a Cyrillic a
        "x_api_key",
    ],
)
def test_a_key_to_redact_anywhere_is_redacted_in_the_text(key: str) -> None:
    many = [{"": 0}] * 100
    for metadata in (
        {"l": many, "x": {key: "s3cret"}},
        {"l": many, key: "s3cret"},
        {"l": [*many, [{"deep": {key: "s3cret"}}]]},
        {"l": many, key: {key: ["s3cret", {"password": "s3cret"}]}, "z": 1},
        # Letters enough in the values that the keys are read one by one.
        {"text": "lorem" * 1000, "l": [1, 2], key: "s3cret"},
    ):
        privacy = Privacy()
        stored = privacy.stored(metadata)
        assert type(stored) is JsonText
        walk = _Walk(privacy, privacy.max_bytes)
        assert stored == _dumped(walk.mapping(metadata, 0))
        text = _dumped(privacy.metadata(metadata))
        assert "s3cret" not in text
        assert REDACTED in text


def test_values_that_look_like_keys_are_not_keys() -> None:
    """A value holding a redacted name, or text shaped like a key, is kept
    by the encoded copy: only keys are matched."""
    metadata = {"l": [{"": 0}] * 100, "note": 'the "password": field', "t": "token"}
    stored = Privacy().stored(metadata)
    assert type(stored) is JsonText
    assert json.loads(stored) == metadata


def test_every_key_of_the_text_is_searched() -> None:
    """The keys read back from the text, for any JSON the encoder makes:
    each key's skeleton is among them (more pieces are allowed, never fewer)."""
    from hypothesis import given, settings
    from hypothesis import strategies as st

    from flask_telemetry.domain.skeleton import skeleton

    text_keys = st.text(st.characters(blacklist_categories=["Cs"]), max_size=12)
    values = st.recursive(
        st.none() | st.booleans() | st.integers(-5, 5) | text_keys,
        lambda inner: (
            st.lists(inner, max_size=4) | st.dictionaries(text_keys, inner, max_size=4)
        ),
        max_leaves=30,
    )

    def keys_of(value: object) -> t.Iterator[str]:
        if isinstance(value, dict):
            for key, item in value.items():
                yield key
                yield from keys_of(item)
        elif isinstance(value, list):
            for item in value:
                yield from keys_of(item)

    @settings(max_examples=400, deadline=None, derandomize=True)
    @given(st.dictionaries(text_keys, values, max_size=5))
    def check(metadata: dict[str, t.Any]) -> None:
        text = json.dumps(metadata, ensure_ascii=False)
        found = encoded._key_skeletons(text).split("\x00")
        for key in keys_of(metadata):
            wanted = skeleton(key)
            # Escapes are dropped with their letter: the found piece may
            # lack the letters of "\n" or "\u0001"; never the key's others.
            assert any(wanted.startswith(piece) or piece in wanted for piece in found)
            if "\\" not in json.dumps(key, ensure_ascii=False)[1:-1]:
                assert wanted in found

    check()


def test_a_key_added_after_the_first_pass_is_still_redacted(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Another thread adding a key between the first pass and the encoding
    cannot slip it past redaction: the keys are read from the text."""
    metadata: dict[str, t.Any] = {"l": [{"": 0}] * 100}
    bounded = encoded._bounded

    def and_then_a_secret(value: t.Any, limit: int) -> bool:
        verdict = bounded(value, limit)
        metadata["password"] = "s3cret"
        return verdict

    monkeypatch.setattr(encoded, "_bounded", and_then_a_secret)
    stored = Privacy().stored(metadata)
    assert "s3cret" not in _dumped(stored)


def test_the_queue_counts_the_text_by_its_size() -> None:
    fields: dict[str, t.Any] = {
        "actor_type": "anonymous",
        "event_type": "cache_miss",
        "severity": "info",
        "occurred_at": 0.0,
    }
    base = pending_bytes(pending(**fields))
    text = Privacy().stored(SHAPES["900 one-item dicts"])
    assert type(text) is JsonText
    assert pending_bytes(pending(**fields, metadata=text)) - base == sys.getsizeof(text)


@pytest.mark.parametrize("delivery", ["sync", "async"])
def test_queued_text_is_stored_and_read_back_as_the_copy(
    make_app: MakeApp, delivery: str
) -> None:
    bundle = make_app(TELEMETRY_DELIVERY=delivery)
    with bundle.app.app_context():
        for name in SHAPES:
            bundle.telemetry.record(EventType.CACHE_MISS, metadata=SHAPES[name])
    rows = bundle.rows()
    privacy = Privacy()
    assert [row.metadata for row in rows] == [
        privacy.metadata(shape) for shape in SHAPES.values()
    ]


def test_captured_events_hold_objects(make_app: MakeApp) -> None:
    from flask_telemetry.testing import capture

    bundle = make_app()
    with capture(bundle.app) as captured, bundle.app.app_context():
        metadata = SHAPES["2,041 empty dicts"]
        bundle.telemetry.record(EventType.CACHE_MISS, metadata=metadata)
    captured.assert_recorded(EventType.CACHE_MISS, metadata={"l": [{}] * 2041})


def test_the_text_is_the_walks_copy_for_any_metadata() -> None:
    """Keys to redact at any depth, controls, C1 controls, lone surrogates,
    quotes and backslashes in keys and values: the stored text is the
    walk's copy to the byte, or the walk's marker when too big."""
    from hypothesis import given, settings
    from hypothesis import strategies as st

    pieces = st.sampled_from(
        [
            *("password", "Token", "x", "", '"', "\\", "\x00", "\x01", "\x85"),
            *("\ud800", "\t", "\n", "é", "日本", "p\u0430ss", "a\u202eb"),
            *(": ", '": ', "[REDACTED]"),
        ]
    )
    texts = st.lists(pieces, max_size=4).map("".join)
    values = st.recursive(
        st.none() | st.booleans() | st.integers(-(10**6), 10**6) | texts,
        lambda inner: (
            st.lists(inner, max_size=4) | st.dictionaries(texts, inner, max_size=4)
        ),
        max_leaves=30,
    )

    @settings(max_examples=800, deadline=None, derandomize=True)
    @given(st.dictionaries(texts, values, max_size=5), st.sampled_from([60, 8192]))
    def check(metadata: dict[str, t.Any], limit: int) -> None:
        privacy = Privacy(max_bytes=limit)
        walk = _Walk(privacy, limit)
        try:
            walked: t.Any = walk.mapping(metadata, 0)
        except Exception as exc:  # the walk's verdict
            walked = type(exc).__name__
        try:
            stored: t.Any = privacy.stored(metadata)
        except Exception as exc:
            stored = type(exc).__name__
        if isinstance(stored, JsonText):
            assert stored == _dumped(walked)
        elif walked == "_TooBig":
            assert stored["metadata_truncated"] is True
        elif isinstance(walked, dict):
            assert stored == walked
        else:
            assert stored == "TelemetryError"

    check()

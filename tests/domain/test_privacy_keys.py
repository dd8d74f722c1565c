"""Redaction on normalized keys, colliding keys, validated correlation ids
(issue 11, §6)."""

from __future__ import annotations

import pytest

from flask_telemetry import TelemetryError
from flask_telemetry.domain.correlation import Correlation
from flask_telemetry.domain.privacy import (
    DEFAULT_REDACT_KEYS,
    REDACTED,
    Privacy,
    skeleton,
)


@pytest.mark.parametrize(
    "key",
    [
        "password",
        "Pass Word",
        "pass\u200bword",  # a zero-width space inside
        "\uff50assword",  # a full-width p
        "PASSWORD",
        "pass-word",
        "user.Password.hash",
        "X-Api-Key",
        "api key",
        "Stra\u00dfe_token",  # case folding: ß and the rest
        "AUTHORIZATION",
        # Look-alikes and combining marks (Unicode TS #39 skeletons).
        "p\u0430ssword",  # Cyrillic a
        "pa\u0300ssword",  # a combining grave accent, which NFKC makes "\u00e0"
        "P\u0391SSWORD",  # Greek capital Alpha
        "\u0420assword",  # Cyrillic capital Er
        "t\u043eken",  # Cyrillic o
        "s\u0435cr\u0435t",  # Cyrillic e, twice
        "\u0441ookie",  # Cyrillic es
        "to\u0301ke\u0303n",  # combining marks on several letters
        # Names Sentry's and OpenTelemetry's default scrubbers cover.
        "pwd",
        "mysql_pwd",
        "auth",
        "X-Auth-Token",
        "credentials",
        "jwt",
        "bearer",
        "privatekey",
        "csrftoken",
        "X-CSRFToken",
        "_xsrf",
        "XSRF-TOKEN",
        "PHPSESSID",
        "connect.sid",
        "sessionid",
        "set_cookie",
        "symfony",
        "x_forwarded_for",
        "X-Real-IP",
        "remote_addr",
        "ip_address",
        "AWSAccessKeyId",
        "X-Goog-Signature",
    ],
)
def test_redaction_matches_normalized_keys(key: str) -> None:
    assert Privacy().metadata({key: "s3cret"}) == {key: REDACTED}
    # Nested, through the walk, the same.
    assert Privacy().metadata({"m": [{key: "s3cret"}]}) == {"m": [{key: REDACTED}]}


@pytest.mark.parametrize(
    ("key", "expected"),
    [
        ("password", "password"),
        ("Pass-Word", "password"),
        ("p\u0430ssword", "password"),
        ("pa\u0300ssword", "password"),
        ("\uff50\uff41ss", "pass"),  # full-width
        ("\u03a4\u039f\u039a\u0395\u039d", "token"),  # Greek capitals
        ("caf\u00e9", "cafe"),
        ("\u65e5\u672c", "\u65e5\u672c"),  # letters without a look-alike stay
    ],
)
def test_skeleton(key: str, expected: str) -> None:
    assert skeleton(key) == expected


def test_every_default_key_is_redacted_as_written() -> None:
    privacy = Privacy()
    for key in DEFAULT_REDACT_KEYS:
        assert privacy.redacts(key), key
        assert privacy.redacts(key.upper()), key


@pytest.mark.parametrize(
    "key",
    ["pass", "word", "user_id", "route", "sessio", "status", "duration_ms", "\u65e5"],
)
def test_harmless_keys_are_kept(key: str) -> None:
    assert Privacy().metadata({key: "v"}) == {key: "v"}


def test_keys_equal_once_made_strings_are_refused_not_lost() -> None:
    with pytest.raises(TelemetryError, match="two keys are '1'"):
        Privacy().metadata({1: "a", "1": "b"})
    with pytest.raises(TelemetryError, match="two keys are 'true'"):
        Privacy().metadata({True: "a", "true": "b"})
    assert Privacy().metadata({1: "a", "2": "b"}) == {"1": "a", "2": "b"}


def test_correlation_request_id_is_validated_like_the_header() -> None:
    good = Correlation(request_id="abc-123.x:y_z", trace_id="0" * 32)
    assert (good.request_id, good.trace_id) == ("abc-123.x:y_z", "0" * 32)
    for hostile in ("evil\r\nSet-Cookie: x=1", "x" * 65, "", "caf\u00e9", "a b"):
        corr = Correlation(request_id=hostile, trace_id="not hex")
        assert corr.request_id != hostile
        assert len(corr.request_id) == 36  # a fresh UUID4
        assert corr.trace_id is None

"""Redaction on normalized keys, colliding keys, validated correlation ids
(issue 11, §6)."""

from __future__ import annotations

import pytest

from flask_telemetry import TelemetryError
from flask_telemetry.domain.correlation import Correlation
from flask_telemetry.domain.privacy import REDACTED, Privacy


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
    ],
)
def test_redaction_matches_normalized_keys(key: str) -> None:
    assert Privacy().metadata({key: "s3cret"}) == {key: REDACTED}


@pytest.mark.parametrize("key", ["pass", "word", "user_id", "route", "sessio"])
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

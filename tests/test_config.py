"""Configuration of correlation, sampling and privacy is validated at init_app."""

from __future__ import annotations

import typing as t

import pytest
from flask import Flask
from flask_sqlalchemy import SQLAlchemy

from flask_telemetry import ConfigVars, Telemetry
from flask_telemetry._config import DEFAULT_EXCLUDE, DEFAULTS
from flask_telemetry.domain.privacy import DEFAULT_REDACT_KEYS


def _init(**config: t.Any) -> Flask:
    app = Flask(__name__)
    app.config.update(SQLALCHEMY_DATABASE_URI="sqlite://", **config)
    SQLAlchemy(app)
    Telemetry(app)
    return app


@pytest.mark.parametrize(
    ("key", "value", "accepted"),
    [
        (ConfigVars.TRACEPARENT, "yes", "True or False"),
        (ConfigVars.EXCLUDE, "static", "list of strings"),
        (ConfigVars.EXCLUDE, ["static", ""], "non-empty strings"),
        (ConfigVars.EXCLUDE, ["/a*b"], "may only end with '*'"),
        (ConfigVars.SLOW_REQUEST_MS_BY_ENDPOINT, {"x": -1}, "milliseconds >= 0"),
        (ConfigVars.SLOW_REQUEST_MS_BY_ENDPOINT, ["x"], "map endpoint names"),
        (ConfigVars.SAMPLE_RATE, 1.5, "from 0.0 to 1.0"),
        (ConfigVars.SAMPLE_RATE, True, "from 0.0 to 1.0"),
        (ConfigVars.SAMPLE_KEEP_STATUS, 99, "from 100 to 600"),
        (ConfigVars.SAMPLE_KEEP_STATUS, "400", "from 100 to 600"),
        (ConfigVars.REDACT_KEYS, "password", "list of strings"),
        (ConfigVars.METADATA_MAX_BYTES, 10, ">= 256"),
        (ConfigVars.METADATA_MAX_BYTES, 1024.0, "an integer"),
        (ConfigVars.IP_MODE, "anonymise", "'full', 'truncate', 'hash', 'none'"),
        (ConfigVars.IP_HASH_KEY, 42, "non-empty str or bytes"),
    ],
)
def test_bad_value_names_the_key_and_what_is_accepted(
    key: str, value: object, accepted: str
) -> None:
    with pytest.raises(ValueError, match=key) as info:
        _init(**{key: value})
    assert accepted in str(info.value)


def test_hash_mode_needs_a_secret() -> None:
    with pytest.raises(ValueError, match=ConfigVars.IP_HASH_KEY):
        _init(**{ConfigVars.IP_MODE: "hash"})


def test_hash_mode_derives_its_key_from_secret_key() -> None:
    app = _init(**{ConfigVars.IP_MODE: "hash"}, SECRET_KEY="app-secret")
    settings = app.extensions["telemetry"].settings
    assert settings.IP_HASH_KEY not in (None, b"app-secret")
    assert "app-secret" not in repr(settings)
    other = _init(**{ConfigVars.IP_MODE: "hash", ConfigVars.IP_HASH_KEY: "k" * 32})
    assert other.extensions["telemetry"].settings.IP_HASH_KEY == b"k" * 32
    assert "kkkk" not in repr(other.extensions["telemetry"].settings)


def test_defaults_are_set_on_the_app_config() -> None:
    app = _init()
    assert app.config[ConfigVars.EXCLUDE] == DEFAULT_EXCLUDE
    assert app.config[ConfigVars.REDACT_KEYS] == DEFAULT_REDACT_KEYS
    assert app.config[ConfigVars.SAMPLE_RATE] == 1.0
    assert app.config[ConfigVars.METADATA_MAX_BYTES] == 8192
    assert app.config[ConfigVars.IP_MODE] == "full"
    assert app.config[ConfigVars.TRACEPARENT] is True
    for key in (ConfigVars.SLOW_REQUEST_MS_BY_ENDPOINT, ConfigVars.SAMPLE_KEEP_STATUS):
        assert app.config[key] == DEFAULTS[key]


def test_good_values_are_accepted() -> None:
    app = _init(
        **{
            ConfigVars.EXCLUDE: ["admin.*", "/internal/", "/ping*"],
            ConfigVars.SLOW_REQUEST_MS_BY_ENDPOINT: {"export": 30_000, "api.*": 200},
            ConfigVars.SAMPLE_RATE: 0,
            ConfigVars.SAMPLE_KEEP_STATUS: 600,
            ConfigVars.REDACT_KEYS: ("ssn",),
            ConfigVars.METADATA_MAX_BYTES: 256,
            ConfigVars.IP_MODE: "truncate",
        }
    )
    settings = app.extensions["telemetry"].settings
    assert settings.SAMPLE_RATE == 0.0
    assert settings.REDACT_KEYS == ("ssn",)
    assert dict(settings.SLOW_REQUEST_MS_BY_ENDPOINT) == {
        "export": 30_000,
        "api.*": 200,
    }

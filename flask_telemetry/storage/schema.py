"""Marshmallow schema of the storage DTO, aligned with the columns."""

from __future__ import annotations

import datetime as dt
import json
import typing as t
from collections.abc import Mapping

import marshmallow as ma

from . import row

#: BIGINT bounds shared by PostgreSQL and MySQL.
BIGINT_MIN = -(2**63)
BIGINT_MAX = 2**63 - 1


#: The JSON text of a metadata object as it is stored: UTF-8 characters as
#: they are (not ``\\uXXXX`` escapes, so the size limit of the privacy
#: settings is the size stored) and the default separators.
_encoder = json.JSONEncoder(allow_nan=False, ensure_ascii=False, check_circular=False)
_c_encode = getattr(json.encoder, "c_make_encoder", None)
if _c_encode is not None:
    # The C encoder JSONEncoder.encode() makes on every call, made once. No
    # circular check: metadata comes from the privacy walk, which refuses
    # cycles, and a cycle that got here anyway ends in a RecursionError.
    _c_encode = _c_encode(
        None,
        _encoder.default,
        json.encoder.encode_basestring,
        None,
        _encoder.key_separator,
        _encoder.item_separator,
        False,
        False,
        False,
    )


def encode_json(value: dict[str, t.Any]) -> str:
    """``value`` as the JSON text stored (see above)."""
    if _c_encode is None:
        return _encoder.encode(value)
    return "".join(_c_encode(value, 0))


class _NoValidators:
    """For fields that declare no validators: skip marshmallow's per-call
    ``And`` of them (the verdict is the same, for a fraction of the cost)."""

    validators: list[t.Any]

    def _validate(self, value: t.Any) -> None:
        if self.validators:
            super()._validate(value)  # type: ignore[misc]


class JsonObject(_NoValidators, ma.fields.Field[dict[str, t.Any]]):
    """A JSON object: a mapping with string keys that JSON can encode.

    Loads as a plain ``dict``. With ``as_text=True`` the same checks load it
    as its JSON text instead (:data:`encode_json`), which is what the writer
    binds: a row's metadata is encoded once, by its validation.
    """

    default_error_messages = {
        "invalid": "Not a valid mapping type.",
        "keys": "Keys must be strings.",
        "json": "Not JSON-serialisable: {error}",
    }

    def __init__(self, *, as_text: bool = False, **kwargs: t.Any) -> None:
        super().__init__(**kwargs)
        self.as_text = as_text

    def _deserialize(
        self, value: t.Any, attr: t.Any, data: t.Any, **kwargs: t.Any
    ) -> t.Any:
        if type(value) is row.JsonText:  # checked whole when it was made
            return str(value) if self.as_text else value.objects()
        if type(value) is not dict:
            if not isinstance(value, Mapping):
                raise self.make_error("invalid")
            value = dict(value)
        for key in value:
            if type(key) is not str:
                raise self.make_error("keys")
        try:
            text = encode_json(value)
        except (TypeError, ValueError, RecursionError) as exc:
            raise self.make_error("json", error=exc) from exc
        return text if self.as_text else dict(value)


class _AwareDateTimeValue(_NoValidators, ma.fields.AwareDateTime):
    """An aware ``datetime`` object: the row is inserted as it is, so a
    string that would parse as one is not accepted in its place."""

    def _deserialize(
        self, value: t.Any, attr: t.Any, data: t.Any, **kwargs: t.Any
    ) -> dt.datetime:
        if not isinstance(value, dt.datetime):
            raise self.make_error("invalid", input=value, obj_type=self.OBJ_TYPE)
        zone = value.tzinfo
        if zone is not None and zone.utcoffset(value) is not None:
            return value  # aware: what AwareDateTime returns, without its calls
        return super()._deserialize(value, attr, data, **kwargs)


def _field(column: row.Column) -> ma.fields.Field[t.Any]:
    """The schema's field for ``column``: its type, its length, its
    vocabulary, and None allowed when the column is nullable."""
    if column.kind is str:
        validate: list[t.Any] = []
        if column.length is not None:
            low = 0 if column.nullable else 1
            validate.append(ma.validate.Length(min=low or None, max=column.length))
        if column.vocabulary is not None and not column.extensible:
            validate.append(ma.validate.OneOf([v.value for v in column.vocabulary]))
        return ma.fields.String(
            required=not column.nullable,
            allow_none=column.nullable,
            validate=validate[0] if len(validate) == 1 else validate,
        )
    if column.kind is int:
        return ma.fields.Integer(
            required=not column.nullable,
            allow_none=column.nullable,
            strict=True,
            validate=ma.validate.Range(min=BIGINT_MIN, max=BIGINT_MAX),
        )
    if column.kind is dict:
        return JsonObject(required=not column.nullable, allow_none=column.nullable)
    if column.kind is dt.datetime:
        return _AwareDateTimeValue(
            required=not column.nullable, allow_none=column.nullable
        )
    raise TypeError(f"No schema field for {column.kind!r} ({column.name}).")


#: The column whose vocabulary an application extends (``event_type``).
_EXTENSIBLE = next(c for c in row.COLUMNS if c.extensible)
if t.TYPE_CHECKING:
    _Columns = ma.Schema
else:
    #: One field per column, in column order.
    _Columns = ma.Schema.from_dict(
        {column.name: _field(column) for column in row.COLUMNS}, name="_Columns"
    )


class TelemetryEventSchema(_Columns):
    """Validates one row of ``telemetry_traces`` and loads it as a TraceEvent.

    One field per column of ``row.COLUMNS``, made from it: lengths and
    vocabularies match the columns, so a row this schema accepts is one the
    table can hold. ``event_types`` extends :class:`~flask_telemetry.EventType`
    with the values an application registered.
    """

    class Meta:
        unknown = ma.RAISE

    def __init__(self, *, event_types: t.Iterable[str] = (), **kwargs: t.Any) -> None:
        super().__init__(**kwargs)
        assert _EXTENSIBLE.vocabulary is not None
        self.event_types = frozenset(
            e.value for e in _EXTENSIBLE.vocabulary
        ) | frozenset(event_types)

    @ma.validates(_EXTENSIBLE.name)
    def _known_event_type(self, value: str, **_: t.Any) -> None:
        if value not in self.event_types:
            raise ma.ValidationError(f"Unknown event type {value!r}.")

    @ma.post_load
    def _make_event(self, data: dict[str, t.Any], **_: t.Any) -> row.TraceEvent:
        return row.TraceEvent(**data)

"""One row definition: the model, the schema, the DTO and the queued form
agree with the declared columns; the settings agree with the declared keys."""

from __future__ import annotations

import dataclasses
import datetime as dt
import inspect
import typing as t

import marshmallow as ma
import sqlalchemy as sa
from flask_sqlalchemy import SQLAlchemy

from flask_telemetry._config import KEYS, Settings
from flask_telemetry.domain import mapping
from flask_telemetry.storage import row
from flask_telemetry.storage.model import trace_model
from flask_telemetry.storage.schema import TelemetryEventSchema

SQL_TYPES: dict[type, type[sa.types.TypeEngine[t.Any]]] = {
    str: sa.String,
    int: sa.BigInteger,
    dict: sa.JSON,
    dt.datetime: sa.DateTime,
}


def test_the_dto_has_one_field_per_column_in_order() -> None:
    fields = dataclasses.fields(row.TraceEvent)
    assert [f.name for f in fields] == [c.name for c in row.COLUMNS]
    hints = t.get_type_hints(row.TraceEvent)
    for column in row.COLUMNS:
        optional = type(None) in t.get_args(hints[column.name])
        assert optional == column.nullable, column.name


def test_the_model_is_made_from_the_columns() -> None:
    table: sa.Table = trace_model(SQLAlchemy()).__table__
    assert [c.name for c in table.columns] == ["id", *(c.name for c in row.COLUMNS)]
    indexed = {c.name for i in table.indexes if len(i.columns) == 1 for c in i.columns}
    for column in row.COLUMNS:
        made = table.columns[column.name]
        assert isinstance(made.type, SQL_TYPES[column.kind]), column.name
        assert made.nullable == column.nullable, column.name
        assert getattr(made.type, "length", None) == column.length, column.name
        assert (column.name in indexed) == column.indexed, column.name


def test_the_schema_checks_every_column_at_its_size() -> None:
    fields = TelemetryEventSchema().fields
    assert list(fields) == [c.name for c in row.COLUMNS]
    for column in row.COLUMNS:
        field = fields[column.name]
        assert field.allow_none == column.nullable, column.name
        lengths = [v.max for v in field.validators if isinstance(v, ma.validate.Length)]
        assert lengths == ([column.length] if column.length else []), column.name


def test_the_queued_form_is_built_by_column_name() -> None:
    names = list(inspect.signature(mapping.pending).parameters)
    assert names == [c.name for c in row.COLUMNS]
    values = {name: f"v{i}" for i, name in enumerate(names)}
    made: tuple[object, ...] = mapping.pending(**values)
    assert made == tuple(values.values())


def test_the_vocabularies_are_checked_against_their_enums() -> None:
    schema = TelemetryEventSchema()
    good = {
        "actor_type": "user",
        "event_type": "cache_hit",
        "severity": "info",
        "occurred_at": dt.datetime.now(dt.UTC),
    }
    assert schema.validate(good) == {}
    for name, bad in (("actor_type", "robot"), ("severity", "loud")):
        assert name in schema.validate({**good, name: bad})


def test_settings_have_one_field_per_key() -> None:
    fields = dataclasses.fields(t.cast(t.Any, Settings))
    assert [f.name for f in fields] == [k.attr for k in KEYS]
    assert all(k.doc for k in KEYS)

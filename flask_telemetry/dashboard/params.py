"""The pages and the URL parameters each of them reads, declared once.

The blueprint registers its routes from :data:`PAGES`, each view reads its
query string through :func:`args` (which refuses a name its page does not
declare), and the tests fuzz every declared parameter of every page: a new
parameter is declared here or it cannot be read. A page's filters are
declared with how each value is read (:class:`Filter`), and read together
by :meth:`Args.filters`.
"""

from __future__ import annotations

import dataclasses
import typing as t

from flask import request

from ..storage.vocabulary import ActorType, Severity

#: The window selector's parameters, read by every page.
WINDOW = ("window", "since", "until")

#: The largest value of a BIGINT column (ids, actor ids).
BIGINT_MAX = 2**63 - 1
BIGINT_MIN = -(2**63)


@dataclasses.dataclass(frozen=True, kw_only=True, slots=True)
class Page:
    """One page: its rule under the prefix and the parameters it reads."""

    #: The URL rule under the dashboard's prefix (path parameters included).
    rule: str
    #: The query parameters the page reads.
    params: tuple[str, ...]
    #: Query arguments that show the page with content (its other
    #: parameters are tried on top of these).
    example: t.Mapping[str, str] = dataclasses.field(default_factory=dict)
    #: For a parameter that only counts next to others, those others.
    needs: t.Mapping[str, t.Mapping[str, str]] = dataclasses.field(default_factory=dict)
    #: The parameters that filter what the page lists, each with how its
    #: value is read (see :meth:`Args.filters`), in the order they are read.
    filters: t.Mapping[str, Filter] = dataclasses.field(default_factory=dict)

    @property
    def path_params(self) -> list[str]:
        """The names of the rule's path parameters."""
        return [
            part.split(":")[-1].rstrip(">")
            for part in self.rule.split("<")[1:]
            if ">" in part
        ]


class Filter(t.Protocol):
    """How a filter's value is read from the query string."""

    def read(self, args: Args, key: str, errors: list[str]) -> object:
        """The value of ``key`` in ``args``; None when it is empty, or bad
        (then with its message added to ``errors``)."""


@dataclasses.dataclass(frozen=True, slots=True)
class AsGiven:
    """Any value, as given."""

    def read(self, args: Args, key: str, errors: list[str]) -> str | None:
        """The value, None when empty."""
        return args.get(key) or None


@dataclasses.dataclass(frozen=True, slots=True)
class Text:
    """Any value, without surrounding blanks (:meth:`Args.text`)."""

    def read(self, args: Args, key: str, errors: list[str]) -> str | None:
        """The value without surrounding blanks, None when that is empty."""
        return args.text(key)


@dataclasses.dataclass(frozen=True, slots=True)
class OneOf:
    """One of ``values``; another is refused as an unknown ``noun``."""

    noun: str
    values: tuple[str, ...]

    def read(self, args: Args, key: str, errors: list[str]) -> str | None:
        """The value, None when empty or not one of ``values`` (then with
        its message added to ``errors``)."""
        value = args.get(key) or None
        if value is None or value in self.values:
            return value
        errors.append(f"Unknown {self.noun} {value!r}.")
        return None


@dataclasses.dataclass(frozen=True, slots=True)
class WholeNumber:
    """An id, a BIGINT (:meth:`Args.whole_number`)."""

    def read(self, args: Args, key: str, errors: list[str]) -> int | None:
        """The value as an integer, None when empty or not a BIGINT (then
        with its message added to ``errors``)."""
        return args.whole_number(key, errors)


#: The values the vocabularies' filters take, in the vocabularies' order.
SEVERITIES = tuple(s.value for s in Severity)
ACTOR_TYPES = tuple(a.value for a in ActorType)

#: The events page's filters: the read API's filters of :meth:`events
#: <flask_telemetry.Telemetry.events>`, ``before_id`` paging. An event
#: type is any name (applications record their own).
EVENT_FILTERS: dict[str, Filter] = {
    "event_type": AsGiven(),
    "severity": OneOf("severity", SEVERITIES),
    "min_severity": OneOf("severity", SEVERITIES),
    "route": Text(),
    "request_id": Text(),
    "actor_type": OneOf("actor type", ACTOR_TYPES),
    "actor_id": WholeNumber(),
    "before_id": WholeNumber(),
}

_CUSTOM = {
    "since": {"window": "custom"},
    "until": {"window": "custom", "since": "2026-01-01T00:00"},
}

PAGES: dict[str, Page] = {
    "overview": Page(
        rule="/", params=(*WINDOW, "sort", "order", "exact"), needs=_CUSTOM
    ),
    "route": Page(
        rule="/route",
        params=(*WINDOW, "name", "unmatched", "exact"),
        example={"name": "shop.item"},
        needs=_CUSTOM,
    ),
    "trace": Page(rule="/trace/<path:request_id>", params=WINDOW, needs=_CUSTOM),
    "events": Page(
        rule="/events",
        params=(*WINDOW, *EVENT_FILTERS),
        needs=_CUSTOM,
        filters=EVENT_FILTERS,
    ),
    "compare": Page(
        rule="/compare",
        params=(*WINDOW, "release", "baseline_release", "baseline"),
        example={"baseline": "7d"},
        needs={**_CUSTOM, "baseline_release": {"release": "r1"}},
    ),
}


class Args(t.Mapping[str, str]):
    """The current request's query arguments, as far as ``page`` declares them.

    Reading a name the page does not declare in :data:`PAGES` is a
    programming error (``RuntimeError``), so that no parameter escapes the
    tests that fuzz the declared ones.
    """

    def __init__(self, page: str) -> None:
        self.page = page
        self._declared = frozenset(PAGES[page].params)

    def __getitem__(self, key: str) -> str:
        if key not in self._declared:
            raise RuntimeError(
                f"{key!r} is not a parameter of the dashboard's {self.page!r} page: "
                "declare it in flask_telemetry.dashboard.params.PAGES."
            )
        value: str = request.args[key]
        return value

    def __iter__(self) -> t.Iterator[str]:
        return (k for k in request.args if k in self._declared)

    def __len__(self) -> int:
        return sum(1 for _ in self)

    def text(self, key: str) -> str | None:
        """The value of ``key`` without surrounding blanks, None when empty."""
        return (self.get(key) or "").strip() or None

    def whole_number(self, key: str, errors: list[str]) -> int | None:
        """``key`` as an id (a BIGINT), None when empty; a bad value is
        left out with its message added to ``errors``."""
        raw = self.text(key)
        if raw is None:
            return None
        try:
            value = int(raw)
        except ValueError:
            value = None
        if value is None or not BIGINT_MIN <= value <= BIGINT_MAX:
            errors.append(
                f"{key} must be a whole number from {BIGINT_MIN} to {BIGINT_MAX}, "
                f"not {raw[:40]!r}."
            )
            return None
        return value

    def filters(self, errors: list[str]) -> dict[str, t.Any]:
        """The page's filters (:attr:`Page.filters`) that have a value, each
        read as declared, in the order declared; a bad value is left out
        with its message added to ``errors``."""
        found: dict[str, t.Any] = {}
        for key, filter_ in PAGES[self.page].filters.items():
            value = filter_.read(self, key, errors)
            if value is not None:
                found[key] = value
        return found


def current() -> Args:
    """The query arguments of the current request's page."""
    endpoint = request.endpoint or ""
    return Args(endpoint.rpartition(".")[2])

"""Where the time goes: statements per request and job, N+1 shapes, profiles."""

from __future__ import annotations

import datetime as dt
import json
import typing as t
import uuid

import jobs_app
import pytest
import sqlalchemy as sa
from browser_support import browser, serve  # noqa: F401
from flask import Flask
from sqlalchemy import orm

from conftest import Bundle, MakeApp
from flask_telemetry import ConfigVars, EventType
from flask_telemetry.integrations import celery as telemetry_celery
from flask_telemetry.integrations import rq as telemetry_rq
from flask_telemetry.integrations import sqlalchemy as telemetry_sqlalchemy
from flask_telemetry.integrations._db_time import OTHER, current_tally

if t.TYPE_CHECKING:
    from playwright.sync_api import Browser, Page

SECRET = "hunter2-s3cret-title"
N_PLUS_ONE = EventType.DB_N_PLUS_ONE.value
PROFILE = EventType.DB_QUERY_PROFILE.value


def _library(bundle: Bundle, rows: int = 25) -> tuple[type[t.Any], type[t.Any]]:
    """Authors and their books (one book each), ``rows`` of each."""
    db = bundle.db

    class Author(db.Model):  # type: ignore[name-defined, misc]
        __tablename__ = "authors"
        id = sa.Column(sa.Integer, primary_key=True)
        name = sa.Column(sa.String(100), nullable=False)

    class Book(db.Model):  # type: ignore[name-defined, misc]
        __tablename__ = "books"
        id = sa.Column(sa.Integer, primary_key=True)
        title = sa.Column(sa.String(100), nullable=False)
        author_id = sa.Column(sa.Integer, sa.ForeignKey("authors.id"), nullable=False)
        author = orm.relationship(Author, lazy="select")

    with bundle.app.app_context():
        db.create_all()
        for i in range(rows):
            author = Author(name=f"author {i}")
            db.session.add(Book(title=f"book {i}", author=author))
        db.session.commit()
    return Author, Book


def _ends(bundle: Bundle) -> list[sa.Row[t.Any]]:
    return [r for r in bundle.rows() if r.event_type == "http_request_end"]


def _of(bundle: Bundle, event_type: str) -> list[sa.Row[t.Any]]:
    return [r for r in bundle.rows() if r.event_type == event_type]


@pytest.fixture
def library(make_app: MakeApp) -> t.Iterator[Bundle]:
    bundle = make_app(**{ConfigVars.SLOW_REQUEST_MS: 60_000})
    _author, book = _library(bundle)
    db = bundle.db

    @bundle.app.get("/books")
    def books() -> str:
        # The classic N+1: one query for the books, one per book's author.
        found = db.session.scalars(sa.select(book).where(book.title != SECRET)).all()
        return ",".join(b.author.name for b in found)

    @bundle.app.get("/five")
    def five() -> str:
        for i in range(5):
            db.session.execute(sa.select(book.id).where(book.id == i)).all()
        return "ok"

    @bundle.app.get("/shapes/<int:n>")
    def shapes(n: int) -> str:
        for i in range(n):
            db.session.execute(
                sa.select(sa.literal_column(str(i)) + book.id).limit(1)
            ).all()
        return "ok"

    telemetry_sqlalchemy.instrument(bundle.app, bundle.telemetry)
    yield bundle
    with bundle.app.app_context():
        db.session.remove()
        db.drop_all()


def test_an_orm_loop_records_one_n_plus_one_and_no_value(library: Bundle) -> None:
    client = library.client()
    assert client.get("/books").status_code == 200
    rows = library.rows()
    (event,) = [r for r in rows if r.event_type == N_PLUS_ONE]
    assert event.metadata["count"] >= 25
    assert event.metadata["total_ms"] > 0
    assert event.metadata["threshold"] == 10
    assert event.route_name == "books"
    assert "authors" in event.metadata["statement"]
    (end,) = [r for r in rows if r.event_type == "http_request_end"]
    assert end.request_id == event.request_id
    assert end.metadata["db_count"] >= 26
    assert end.metadata["db_ms"] > 0
    # No parameter value anywhere: not the secret, not the authors' ids.
    for row in rows:
        text = json.dumps(row.metadata)
        assert SECRET not in text
        assert "author 3" not in text


def test_five_queries_are_five_statements(library: Bundle) -> None:
    assert library.client().get("/five").status_code == 200
    (end,) = _ends(library)
    assert end.metadata["db_count"] == 5
    assert 0 < end.metadata["db_ms"] <= end.metadata["duration_ms"]
    assert _of(library, N_PLUS_ONE) == []


def test_one_event_per_shape_and_the_threshold(library: Bundle) -> None:
    client = library.client()
    client.get("/books")
    client.get("/books")
    assert len(_of(library, N_PLUS_ONE)) == 2  # once per request
    telemetry_sqlalchemy.instrument(
        library.app, library.telemetry, n_plus_one_threshold=0
    )
    client.get("/books")
    assert len(_of(library, N_PLUS_ONE)) == 2
    assert _ends(library)[-1].metadata["db_count"] >= 26


def test_distinct_shapes_are_capped_and_still_counted(library: Bundle) -> None:
    telemetry_sqlalchemy.instrument(library.app, library.telemetry, max_shapes=3)
    seen: list[int] = []

    @library.app.get("/shapes-seen")
    def shapes_seen() -> str:
        for i in range(12):
            library.db.session.execute(sa.select(sa.literal_column(str(i)) + 1)).all()
        tally = current_tally.get()
        assert tally is not None
        seen.append(len(tally))
        return "ok"

    library.client().get("/shapes-seen")
    assert seen == [4]  # three shapes, and the rest under one
    (end,) = _ends(library)
    assert end.metadata["db_count"] == 12
    library.client().get("/shapes/12")
    end = _ends(library)[-1]
    assert end.metadata["db_count"] == 12
    # What passed the cap is many shapes: never an N+1 of its own.
    assert [
        r for r in _of(library, N_PLUS_ONE) if OTHER in r.metadata["statement"]
    ] == []


@pytest.mark.parametrize("delivery", ["sync", "async"])
def test_telemetrys_own_statements_are_never_counted(
    make_app: MakeApp, delivery: str
) -> None:
    bundle = make_app(**{ConfigVars.DELIVERY: delivery})
    db = bundle.db

    @bundle.app.get("/records")
    def records() -> str:
        for i in range(12):
            bundle.telemetry.record(EventType.CACHE_MISS, metadata={"i": i})
            if delivery == "async":
                bundle.telemetry.flush(5)
        db.session.execute(sa.select(bundle.note.id)).all()
        db.session.execute(sa.select(bundle.note.body)).all()
        # Reading telemetry's own table is telemetry's too.
        bundle.telemetry.events(limit=5)
        return "ok"

    telemetry_sqlalchemy.instrument(bundle.app, bundle.telemetry)
    assert bundle.client().get("/records").status_code == 200
    (end,) = _ends(bundle)
    assert end.metadata["db_count"] == 2
    assert _of(bundle, N_PLUS_ONE) == []


def test_every_bind_is_counted(make_app: MakeApp, tmp_path: t.Any) -> None:
    bundle = make_app(
        **{"SQLALCHEMY_BINDS": {"reports": f"sqlite:///{tmp_path / 'reports.db'}"}}
    )
    with bundle.app.app_context():
        reports = bundle.db.engines["reports"]

    @bundle.app.get("/both")
    def both() -> str:
        bundle.db.session.execute(sa.select(bundle.note.id)).all()
        with reports.connect() as conn:
            for i in range(11):
                conn.execute(sa.select(sa.literal(i) + 1)).all()
        return "ok"

    telemetry_sqlalchemy.instrument(bundle.app, bundle.telemetry)
    bundle.client().get("/both")
    (end,) = _ends(bundle)
    assert end.metadata["db_count"] == 12
    (event,) = _of(bundle, N_PLUS_ONE)
    assert event.metadata["bind_key"] == "reports"
    assert event.metadata["count"] == 11


@pytest.mark.parametrize("undone", [False, True])
def test_nothing_changes_without_the_integration(
    make_app: MakeApp, undone: bool
) -> None:
    bundle = make_app()

    @bundle.app.get("/q")
    def q() -> str:
        for _ in range(12):
            bundle.db.session.execute(sa.select(bundle.note.id)).all()
        return "ok"

    if undone:
        telemetry_sqlalchemy.instrument(bundle.app, bundle.telemetry)
        telemetry_sqlalchemy.uninstrument(bundle.app)
    bundle.client().get("/q")
    (end,) = _ends(bundle)
    assert "db_count" not in end.metadata
    assert "db_ms" not in end.metadata
    assert _of(bundle, N_PLUS_ONE) == []


def test_sampling_keeps_n_plus_one_requests(make_app: MakeApp) -> None:
    bundle = make_app(
        **{ConfigVars.SAMPLE_RATE: 0.0, ConfigVars.SLOW_REQUEST_MS: 60_000}
    )
    _author, book = _library(bundle, rows=12)

    @bundle.app.get("/books")
    def books() -> str:
        found = bundle.db.session.scalars(sa.select(book)).all()
        return ",".join(b.author.name for b in found)

    @bundle.app.get("/one")
    def one() -> str:
        bundle.db.session.execute(sa.select(book.id)).all()
        return "ok"

    telemetry_sqlalchemy.instrument(bundle.app, bundle.telemetry)
    client = bundle.client()
    for _ in range(3):
        client.get("/one")
        client.get("/books")
    ends = _ends(bundle)
    assert [e.route_name for e in ends] == ["books"] * 3
    assert all(e.metadata["sample_rate"] == 1.0 for e in ends)
    assert len(_of(bundle, N_PLUS_ONE)) == 3
    with bundle.app.app_context():
        bundle.db.session.remove()
        bundle.db.drop_all()


@pytest.mark.parametrize("backend", ["sqlite"], indirect=True)
def test_the_profile_rate_keeps_about_that_share(make_app: MakeApp) -> None:
    bundle = make_app(**{ConfigVars.QUERY_PROFILE_RATE: 0.25})

    @bundle.app.get("/three")
    def three() -> str:
        for i in range(3):
            statement = sa.select(sa.literal_column(str(i)) + bundle.note.id)
            bundle.db.session.execute(statement).all()
        return "ok"

    telemetry_sqlalchemy.instrument(bundle.app, bundle.telemetry)
    client = bundle.client()
    for _ in range(400):
        client.get("/three")
    profiles = _of(bundle, PROFILE)
    assert 60 <= len(profiles) <= 140  # 100 expected; 6 standard deviations
    ends = {e.request_id: e for e in _ends(bundle)}
    for profile in profiles:
        metadata = profile.metadata
        assert metadata["db_count"] == 3
        assert len(metadata["shapes"]) == 3
        starts = [s[1] for s in metadata["statements"]]
        assert starts == sorted(starts)
        assert [s[0] for s in metadata["statements"]] == [0, 1, 2]
        end = ends[profile.request_id]
        assert all(
            0 <= s[1] + s[2] <= end.metadata["duration_ms"]
            for s in metadata["statements"]
        )


@pytest.mark.parametrize("backend", ["sqlite"], indirect=True)
def test_a_profile_fits_the_metadata_cap(make_app: MakeApp) -> None:
    bundle = make_app(
        **{ConfigVars.QUERY_PROFILE_RATE: 1.0, ConfigVars.METADATA_MAX_BYTES: 4096}
    )

    @bundle.app.get("/many")
    def many() -> str:
        for i in range(300):
            pad = "x" * (i % 7)
            statement = sa.select(sa.literal_column(f"'{pad}'") + bundle.note.body)
            bundle.db.session.execute(statement.limit(1)).all()
        return "ok"

    telemetry_sqlalchemy.instrument(bundle.app, bundle.telemetry)
    bundle.client().get("/many")
    (profile,) = _of(bundle, PROFILE)
    metadata = profile.metadata
    assert "metadata_truncated" not in metadata
    assert metadata["db_count"] == 300
    assert len(metadata["statements"]) + metadata["dropped"] == 300
    assert len(json.dumps(metadata)) <= 4096


# -- jobs ---------------------------------------------------------------------


def _queries(count: int) -> int:
    for _ in range(count):
        jobs_app.db.session.execute(sa.text("SELECT 1 + 1")).all()
    return count


def rq_queries(count: int) -> int:
    """An RQ job that runs ``count`` statements of one shape."""
    return _queries(count)


def _job_ends(app: Flask) -> list[t.Any]:
    with app.app_context():
        jobs_app.telemetry.flush(5)
        model = jobs_app.telemetry.trace_model
        return list(jobs_app.db.session.scalars(jobs_app.db.select(model)))


@pytest.fixture
def job_app() -> t.Iterator[Flask]:
    app = jobs_app.create_app(
        {
            "TESTING": True,
            "TELEMETRY_DELIVERY": "sync",
            "JOBS_REDIS_URL": "redis://127.0.0.1:6379/11",
            "JOBS_QUEUE": f"ft-db-{uuid.uuid4().hex[:10]}",
        }
    )
    with app.app_context():
        jobs_app.db.create_all()
    telemetry_sqlalchemy.instrument(app, jobs_app.telemetry)
    yield app
    for celery_app in list(telemetry_celery._instrumented):
        telemetry_celery.uninstrument(celery_app)
    telemetry_rq.uninstrument(None)


def test_a_celery_task_gets_its_own_counts(job_app: Flask) -> None:
    celery_app = job_app.extensions["celery"]
    celery_app.conf.task_always_eager = True
    celery_app.task(name="jobs.queries")(_queries)
    celery_app.tasks["jobs.queries"].delay(3)
    celery_app.tasks["jobs.queries"].delay(12)
    rows = _job_ends(job_app)
    ends = [r for r in rows if r.event_type == "worker_job_end"]
    assert [e.metadata_["db_count"] for e in ends] == [3, 12]
    (event,) = [r for r in rows if r.event_type == N_PLUS_ONE]
    assert event.metadata_["count"] == 12
    assert event.metadata_["job"] == "jobs.queries"
    assert event.request_id == ends[1].request_id
    assert current_tally.get() is None


def test_an_rq_job_gets_its_own_counts(job_app: Flask) -> None:
    queue = jobs_app.rq_queue(job_app)
    try:
        queue.enqueue(rq_queries, 2)
        queue.enqueue(rq_queries, 11)
        with job_app.app_context():
            telemetry_rq.SimpleWorker([queue], connection=queue.connection).work(
                burst=True
            )
        rows = _job_ends(job_app)
    finally:
        queue.delete(delete_jobs=True)
        queue.connection.close()
    ends = [r for r in rows if r.event_type == "worker_job_end"]
    assert [e.metadata_["db_count"] for e in ends] == [2, 11]
    assert all(e.metadata_["db_ms"] >= 0 for e in ends)
    (event,) = [r for r in rows if r.event_type == N_PLUS_ONE]
    assert event.metadata_["count"] == 11
    assert event.request_id == ends[1].request_id


# -- reading ------------------------------------------------------------------


def _end(bundle: Bundle, route: str, metadata: t.Any) -> None:
    with bundle.app.app_context():
        bundle.telemetry.record(EventType.HTTP_REQUEST_END, metadata=metadata)
        # record() in no request keeps no route: set it on the row.
        bundle.telemetry.flush(5)
        engine = bundle.db.engines[bundle.app.config[ConfigVars.BIND_KEY]]
        with engine.begin() as conn:
            last = conn.execute(sa.select(sa.func.max(bundle.traces.c.id))).scalar()
            conn.execute(
                bundle.traces.update()
                .where(bundle.traces.c.id == last)
                .values(route_name=route)
            )


def test_the_summary_reads_the_database_figures(make_app: MakeApp) -> None:
    bundle = make_app()
    # Four requests with figures, one without (never zero statements), and
    # figures of the wrong types (left out of the db figures only).
    for count, db_ms, ms in ((2, 10.0, 40.0), (4, 20.0, 40.0), (6, 30.0, 40.0)):
        _end(
            bundle,
            "shop",
            {"status": 200, "duration_ms": ms, "db_count": count, "db_ms": db_ms},
        )
    _end(
        bundle,
        "shop",
        {"status": 200, "duration_ms": 40.0, "db_count": 8, "db_ms": 40.0},
    )
    _end(bundle, "shop", {"status": 200, "duration_ms": 40.0})
    for junk in ("5", None, -1, 1e30, [1], True):
        _end(
            bundle,
            "shop",
            {"status": 200, "duration_ms": 40.0, "db_count": junk, "db_ms": 1.0},
        )
        _end(
            bundle,
            "shop",
            {"status": 200, "duration_ms": 40.0, "db_count": 1, "db_ms": junk},
        )
    _end(bundle, "plain", {"status": 200, "duration_ms": 5.0})
    with bundle.app.app_context():
        summaries = bundle.telemetry.request_summary(since=dt.timedelta(hours=1))
    assert summaries.unreadable == 0
    by_route = {s.route_name: s for s in summaries}
    shop = by_route["shop"]
    assert shop.requests == 17
    assert shop.db_requests == 4
    assert shop.mean_db_count == pytest.approx(5.0)
    assert shop.mean_db_ms == pytest.approx(25.0)
    assert shop.p95_db_ms == pytest.approx(38.5)
    assert shop.db_share == pytest.approx(100.0 / 160.0)
    plain = by_route["plain"]
    assert plain.db_requests == 0
    assert plain.mean_db_count is None
    assert plain.db_share is None
    assert plain.as_dict()["p95_db_ms"] is None


def test_report_shows_the_database_columns(library: Bundle) -> None:
    client = library.client()
    client.get("/books")
    client.get("/five")
    library.rows()
    result = library.runner().invoke(args=["telemetry", "report", "--since", "1h"])
    assert result.exit_code == 0, result.output
    header = next(line for line in result.output.splitlines() if "route" in line)
    assert header.split()[-4:] == ["db_stmts", "db_mean_ms", "db_p95_ms", "db%"]
    five = next(line for line in result.output.splitlines() if line.startswith("five"))
    assert five.split()[-4] == "5.0"
    result = library.runner().invoke(
        args=["telemetry", "report", "--since", "1h", "--json"]
    )
    routes = {r["route_name"]: r for r in json.loads(result.output)["routes"]}
    assert routes["five"]["mean_db_count"] == 5.0
    assert routes["books"]["mean_db_count"] >= 26
    assert 0 < routes["five"]["db_share"] <= 1.0
    assert routes["five"]["p95_db_ms"] > 0


# -- pages --------------------------------------------------------------------


def test_the_route_and_trace_pages_show_the_database(library: Bundle) -> None:
    library.app.config[ConfigVars.QUERY_PROFILE_RATE] = 1.0
    telemetry_sqlalchemy.instrument(library.app, library.telemetry)
    library.telemetry.init_dashboard(library.app, authorize=lambda: True)
    client = library.client()
    client.get("/books")
    client.get("/books")
    (end, _) = _ends(library)
    answer = client.get("/_telemetry/route?name=books&window=1h")
    assert answer.status_code == 200
    html = answer.get_data(as_text=True)
    assert "statements per request" in html
    assert "of the time in the database" in html
    assert "Repeated statements (N+1)" in html
    assert "FROM authors" in html
    assert SECRET not in html
    trace = client.get(f"/_telemetry/trace/{end.request_id}")
    assert trace.status_code == 200
    html = trace.get_data(as_text=True)
    assert f"<strong>{end.metadata['db_ms']}</strong> ms in the database" in html
    assert f"<strong>{end.metadata['db_count']}</strong> statements" in html
    # The profile's statements on the timeline, one span each.
    assert html.count('class="span db"') == end.metadata["db_count"]


def test_junk_profiles_and_n_plus_one_rows_break_no_page(library: Bundle) -> None:
    library.telemetry.init_dashboard(library.app, authorize=lambda: True)
    client = library.client()
    client.get("/books")
    (end,) = _ends(library)
    junk: list[t.Any] = [
        None,
        [],
        {"shapes": "x", "statements": [[0, 1, 2]]},
        {"shapes": ["a"], "statements": [[5, 1, 2], [0, "x", None], "y", [True, 1, 1]]},
        {"shapes": [1], "statements": [[0, 1e308, -5]]},
    ]
    with library.app.test_request_context():
        # Recorded under the request's id, as written by anything.
        for metadata in junk:
            with (
                library.telemetry.context()
                .__class__(request_id=end.request_id)
                .activate()
            ):
                library.telemetry.record(EventType.DB_QUERY_PROFILE, metadata=metadata)
                library.telemetry.record(EventType.DB_N_PLUS_ONE, metadata=metadata)
    library.rows()
    assert client.get(f"/_telemetry/trace/{end.request_id}").status_code == 200
    assert client.get("/_telemetry/route?name=books&window=1h").status_code == 200


@pytest.fixture
def tab(browser: Browser) -> t.Iterator[Page]:  # noqa: F811
    context = browser.new_context()
    yield context.new_page()
    context.close()


@pytest.mark.slow
@pytest.mark.parametrize("backend", ["sqlite"], indirect=True)
def test_the_route_page_in_a_browser(library: Bundle, tab: Page) -> None:
    page = tab
    library.telemetry.init_dashboard(library.app, authorize=lambda: True)
    client = library.client()
    for _ in range(3):
        client.get("/books")
    library.rows()
    for site in serve(library.app):
        page.goto(f"{site}/_telemetry/route?name=books&window=1h")
        totals = page.locator("ul.totals.db li").all_inner_texts()
        assert len(totals) == 4
        assert totals[0].endswith("statements per request")
        assert float(totals[0].split()[0]) >= 26
        assert totals[3].endswith("of the time in the database")
        assert 0 < float(totals[3].split("%")[0]) <= 100
        rows = page.locator("table.n-plus-one tbody tr")
        assert rows.count() == 1
        cells = rows.first.locator("td").all_inner_texts()
        assert cells[0] == "3"
        assert int(cells[1]) >= 25
        assert "authors" in cells[3]
        assert SECRET not in page.content()
        # The table fits the page.
        page.set_viewport_size({"width": 1280, "height": 900})
        assert page.evaluate("() => document.documentElement.scrollWidth") <= 1280

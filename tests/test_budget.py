"""The performance budget's decision: limits, messages, exit status.

The counts themselves need valgrind and minutes (``python -m
benchmarks.budget``, run by ``.ci/run``); these tests give the decision
counts of their own, so that a budget that cannot fail is caught here.
"""

from __future__ import annotations

import pathlib
import subprocess

import pytest

from benchmarks import budget

ROOT = pathlib.Path(__file__).resolve().parent.parent


def _counts(
    *,
    bare: float = 835_032,
    path: float = 925_216,
    writer: dict[str, tuple[float, float]] | None = None,
) -> budget.Counts:
    pairs = writer or {
        "sqlite": (81_404, 93_922),
        "postgresql": (57_229, 46_297),
        "mariadb": (75_555, 140_609),
    }
    return {
        "request": {"bare": bare, "async-idle-sqlite": path},
        "writer": {db: {"writer": w, "raw": r} for db, (w, r) in pairs.items()},
    }


def test_today_s_counts_are_within_budget() -> None:
    found = budget.checks(_counts())
    assert [check.ok for check in found] == [True] * 4
    assert budget.verdict(found)[1] == []
    assert found[0].ratio == pytest.approx(835_032 / 925_216)


def test_request_path_below_its_floor_fails_and_says_so() -> None:
    # 835,032 / 933,000 = 0.894997: shown with the digits that tell.
    found = budget.checks(_counts(path=933_000))
    table, broken = budget.verdict(found)
    assert [check.ok for check in found] == [False, True, True, True]
    assert len(broken) == 1
    assert "request path" in broken[0]
    assert "is 0.894997, below its floor of 0.895" in broken[0]
    assert "835,032 / 933,000" in broken[0]
    assert "OVER BUDGET" in table


def test_limits_are_inclusive() -> None:
    at_limits = _counts(
        bare=895,
        path=1000,
        writer={"sqlite": (135, 100), "postgresql": (135, 100), "mariadb": (1, 1)},
    )
    assert all(check.ok for check in budget.checks(at_limits))
    just_over = _counts(
        bare=894.9,
        path=1000,
        writer={"sqlite": (135.1, 100), "postgresql": (135, 100), "mariadb": (1, 1)},
    )
    assert [c.ok for c in budget.checks(just_over)] == [False, False, True, True]
    shown = [c.shown() for c in budget.checks(just_over)]
    assert shown == ["0.8949", "1.351", "1.350", "1.000"]


@pytest.mark.parametrize(
    ("db", "name"),
    [("sqlite", "SQLite"), ("postgresql", "PostgreSQL"), ("mariadb", "MariaDB")],
)
def test_writer_over_its_ceiling_names_the_database(db: str, name: str) -> None:
    writer = {
        "sqlite": (80.0, 90.0),
        "postgresql": (57.0, 46.0),
        "mariadb": (75.0, 140.0),
    }
    writer[db] = (136.0, 100.0)
    _, broken = budget.verdict(budget.checks(_counts(writer=writer)))
    assert len(broken) == 1
    assert f"writer on {name}" in broken[0]
    assert "1.360" in broken[0]
    assert "above its ceiling of 1.35" in broken[0]


def test_a_missing_count_fails() -> None:
    counts = _counts()
    del counts["writer"]["mariadb"]
    del counts["request"]["bare"]
    _, broken = budget.verdict(budget.checks(counts))
    assert len(broken) == 2
    assert "request path" in broken[0]
    assert "no count" in broken[0]
    assert "MariaDB" in broken[1]
    assert "no count" in broken[1]


def test_main_exits_1_and_names_what_broke(capsys: pytest.CaptureFixture[str]) -> None:
    writer = {"sqlite": (80.0, 90.0), "postgresql": (70.0, 46.0), "mariadb": (1, 2)}
    events: list[int] = []

    def counter(n: int) -> budget.Counts:
        events.append(n)
        return _counts(writer=writer)

    assert budget.main(["--events", "500"], counter=counter) == 1
    assert events == [500]
    out, err = capsys.readouterr()
    assert "writer on PostgreSQL / plain DBAPI" in out
    assert "performance budget broken" in err
    assert "writer on PostgreSQL / plain DBAPI is 1.522" in err


def test_main_exits_0_within_budget(capsys: pytest.CaptureFixture[str]) -> None:
    assert budget.main([], counter=lambda n: _counts()) == 0
    out, err = capsys.readouterr()
    assert "within every limit" in out
    assert err == ""


def test_main_exits_2_when_the_counts_fail(capsys: pytest.CaptureFixture[str]) -> None:
    def counter(n: int) -> budget.Counts:
        raise subprocess.CalledProcessError(1, ["valgrind"])

    assert budget.main([], counter=counter) == 2
    assert "the counts failed" in capsys.readouterr().err


def test_ci_runs_the_budget_after_the_tests() -> None:
    script = (ROOT / ".ci" / "run").read_text()
    lines = [line.strip() for line in script.splitlines()]
    assert "make test" in lines
    budget_line = next(i for i, line in enumerate(lines) if "benchmarks.budget" in line)
    assert budget_line > lines.index("make test")

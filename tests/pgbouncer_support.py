"""A PgBouncer of the test suite's own, in transaction pooling, in front of
the PostgreSQL server the tests are configured with.

:func:`pgbouncer` writes a configuration in a temporary directory, starts
``pgbouncer`` on a free port of 127.0.0.1 (as the ``postgres`` user when the
tests run as root: PgBouncer refuses to run as root), and always stops it
and removes the directory at the end. :meth:`PgBouncer.restart` stops it
hard (``SIGTERM``: PgBouncer's fast exit, every client and server connection
cut) and starts it again on the same port.

Debian's package (``apt-get install pgbouncer``) is what ``.ci/run``
installs; where it cannot be installed, :func:`require_pgbouncer` skips with
the reason.
"""

from __future__ import annotations

import contextlib
import os
import pwd
import shutil
import signal
import socket
import subprocess
import tempfile
import time
import typing as t
from pathlib import Path

import pytest
import sqlalchemy as sa

from pgcluster import free_port


def pgbouncer_binary() -> str | None:
    """The ``pgbouncer`` program, or None when it is not installed."""
    return shutil.which("pgbouncer") or (
        "/usr/sbin/pgbouncer" if os.path.exists("/usr/sbin/pgbouncer") else None
    )


def require_pgbouncer() -> str:
    """The ``pgbouncer`` program; skip with the reason when it is missing."""
    found = pgbouncer_binary()
    if found is None:
        pytest.skip("pgbouncer is not installed (apt-get install pgbouncer)")
    return found


def _config(root: Path, port: int, host: str, upstream: int, user: str) -> str:
    return f"""\
[databases]
* = host={host} port={upstream}

[pgbouncer]
listen_addr = 127.0.0.1
listen_port = {port}
unix_socket_dir =
auth_type = trust
auth_file = {root / "users.txt"}
admin_users = {user}
pool_mode = transaction
max_client_conn = 1000
default_pool_size = 20
reserve_pool_size = 0
server_reset_query =
server_idle_timeout = 60
ignore_startup_parameters = extra_float_digits
logfile = {root / "pgbouncer.log"}
log_connections = 0
log_disconnections = 0
"""


class PgBouncer:
    """One private PgBouncer: :attr:`port`, :meth:`url_for`, :meth:`restart`."""

    def __init__(self, root: Path, upstream_url: str) -> None:
        self.root = root
        self.binary = require_pgbouncer()
        upstream = sa.make_url(upstream_url)
        self.user = upstream.username or "postgres"
        self.port = free_port()
        self.ini = root / "pgbouncer.ini"
        self.log = root / "pgbouncer.log"
        self.ini.write_text(
            _config(
                root,
                self.port,
                upstream.host or "127.0.0.1",
                upstream.port or 5432,
                self.user,
            )
        )
        (root / "users.txt").write_text(f'"{self.user}" ""\n')
        self._run_as: str | None = None
        if os.geteuid() == 0:
            self._run_as = "postgres"
            account = pwd.getpwnam(self._run_as)
            for path in (root, self.ini, root / "users.txt"):
                os.chown(path, account.pw_uid, account.pw_gid)
        self.proc: subprocess.Popen[bytes] | None = None

    def url_for(self, url: str) -> str:
        """``url`` (a database on the upstream server) through this PgBouncer."""
        made = sa.make_url(url).set(host="127.0.0.1", port=self.port)
        return made.render_as_string(hide_password=False)

    def start(self) -> None:
        """Start PgBouncer and wait until it accepts connections."""
        self.proc = subprocess.Popen(
            [self.binary, str(self.ini)],
            user=self._run_as,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.STDOUT,
        )
        deadline = time.monotonic() + 15
        while True:
            if self.proc.poll() is not None:
                raise RuntimeError(f"pgbouncer exited:\n{self._log_tail()}")
            with (
                contextlib.suppress(OSError),
                socket.create_connection(("127.0.0.1", self.port), timeout=0.5),
            ):
                return
            if time.monotonic() > deadline:
                raise RuntimeError(f"pgbouncer did not start:\n{self._log_tail()}")
            time.sleep(0.05)

    def stop(self) -> None:
        """Stop at once (PgBouncer's fast exit on SIGTERM)."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)
        self.proc = None

    def restart(self, down: float = 0.0) -> None:
        """Stop, stay down ``down`` seconds, start again on the same port."""
        self.stop()
        time.sleep(down)
        self.start()

    def _log_tail(self) -> str:
        return self.log.read_text()[-2000:] if self.log.exists() else ""


@contextlib.contextmanager
def pgbouncer(upstream_url: str) -> t.Iterator[PgBouncer]:
    """A started PgBouncer in front of ``upstream_url``'s server; stopped and
    its directory removed when the block ends."""
    root = Path(tempfile.mkdtemp(prefix="ft-pgbouncer-"))
    try:
        bouncer = PgBouncer(root, upstream_url)
        bouncer.start()
        try:
            yield bouncer
        finally:
            bouncer.stop()
    finally:
        shutil.rmtree(root, ignore_errors=True)


def connections(url: str, application_name: str) -> int:
    """Server connections of ``application_name`` right now, counted on the
    server behind ``url`` (``pg_stat_activity``)."""
    engine = sa.create_engine(url, poolclass=sa.pool.NullPool)
    try:
        with engine.connect() as conn:
            return int(
                conn.execute(
                    sa.text(
                        "SELECT count(*) FROM pg_stat_activity "
                        "WHERE application_name = :name"
                    ),
                    {"name": application_name},
                ).scalar_one()
            )
    finally:
        engine.dispose()

"""A throwaway PostgreSQL cluster that fault tests may stop and start at will.

The shared server the other tests use must never be stopped, so the tests
that need a database outage make their own cluster: ``initdb`` in a
temporary directory, a free port on 127.0.0.1, its socket in that directory.
:func:`pg_cluster` always stops it and removes the directory at the end.

``initdb`` refuses to run as root, so as root the commands run as the
``postgres`` user through ``runuser``. The binaries are looked up in
``$TELEMETRY_TEST_PG_BINDIR``, then ``/usr/lib/postgresql/*/bin``, then PATH.
"""

from __future__ import annotations

import contextlib
import glob
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
import typing as t
from pathlib import Path


def _bindir() -> Path:
    configured = os.environ.get("TELEMETRY_TEST_PG_BINDIR")
    if configured:
        return Path(configured)
    found = sorted(
        glob.glob("/usr/lib/postgresql/*/bin/initdb"),
        key=lambda p: int(Path(p).parent.parent.name),
    )
    if found:
        return Path(found[-1]).parent
    initdb = shutil.which("initdb")
    if initdb is None:
        raise RuntimeError(
            "PostgreSQL's initdb was not found: set TELEMETRY_TEST_PG_BINDIR"
        )
    return Path(initdb).parent


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


class PgCluster:
    """One private PostgreSQL cluster: :meth:`start`, :meth:`stop`, :attr:`url`."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.data = root / "data"
        self.log = root / "server.log"
        self.port = free_port()
        self.bindir = _bindir()
        self.running = False
        self._user: pwd.struct_passwd | None = None
        if os.geteuid() == 0:
            self._user = pwd.getpwnam("postgres")
            os.chown(root, self._user.pw_uid, self._user.pw_gid)

    @property
    def url(self) -> str:
        """SQLAlchemy URL of the cluster's ``postgres`` database."""
        return f"postgresql+psycopg://postgres@127.0.0.1:{self.port}/postgres"

    def _run(self, *args: str, timeout: float = 60) -> None:
        command = [str(self.bindir / args[0]), *args[1:]]
        if self._user is not None:
            command = ["runuser", "-u", self._user.pw_name, "--", *command]
        result = subprocess.run(
            command, capture_output=True, text=True, timeout=timeout, check=False
        )
        if result.returncode != 0:
            log = self.log.read_text() if self.log.exists() else ""
            raise RuntimeError(
                f"{' '.join(command)} failed ({result.returncode}):\n"
                f"{result.stdout}{result.stderr}{log[-2000:]}"
            )

    def init(self) -> None:
        """Create the cluster: trust authentication, no fsync (test data only)."""
        self._run(
            "initdb",
            "-D",
            str(self.data),
            "-U",
            "postgres",
            "-A",
            "trust",
            "-E",
            "UTF8",
            "--locale=C",
            "--no-sync",
        )

    def start(self) -> None:
        """Start the server and wait until it accepts connections."""
        options = (
            f"-p {self.port} -k {self.root} -c listen_addresses=127.0.0.1 "
            "-c fsync=off -c synchronous_commit=off -c full_page_writes=off "
            "-c max_connections=60 -c shared_buffers=16MB"
        )
        self._run(
            "pg_ctl", "-D", str(self.data), "-l", str(self.log), "-o", options,
            "-w", "-t", "60", "start",
        )  # fmt: skip
        self.running = True

    def stop(self, mode: str = "fast") -> None:
        """Stop the server (``fast`` ends the sessions; ``immediate`` kills)."""
        self._run("pg_ctl", "-D", str(self.data), "-m", mode, "-w", "stop")
        self.running = False


@contextlib.contextmanager
def pg_cluster() -> t.Iterator[PgCluster]:
    """A started private cluster; stopped and deleted when the block ends."""
    root = Path(tempfile.mkdtemp(prefix="ft-pg-"))
    cluster = PgCluster(root)
    try:
        cluster.init()
        cluster.start()
        yield cluster
    finally:
        try:
            if cluster.running or (cluster.data / "postmaster.pid").exists():
                cluster.stop("immediate")
        finally:
            shutil.rmtree(root, ignore_errors=True)

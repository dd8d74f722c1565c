"""Overhead over real HTTP: gunicorn with 2 workers per variant, load from
another process (``benchmarks.loadgen``), all on 127.0.0.1."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import time
import typing as t

from .apps import Variant, build
from .common import Block, Relative, Urls, free_port, interleaved
from .inprocess import url_for, variants

WORKERS = 2
CONCURRENCY = 4
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _env(variant: Variant, url: str | None) -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = ROOT + os.pathsep + env.get("PYTHONPATH", "")
    env["BENCH_KIND"] = variant.kind
    env["BENCH_DB"] = variant.db or ""
    env["BENCH_EXTRA"] = "1" if variant.extra else "0"
    env["BENCH_URL"] = url or ""
    return env


def _quiet() -> list[str]:
    # gunicorn 23+ opens a control socket in ~/.gunicorn: one per server
    # would race for it, and the benchmark does not use it.
    import gunicorn.config  # type: ignore[import-untyped]

    names = {setting.name for setting in gunicorn.config.KNOWN_SETTINGS}
    return ["--no-control-socket"] if "control_socket_disable" in names else []


def _wait_listening(port: int, process: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"gunicorn on port {port} exited: {process.returncode}")
        with (
            contextlib.suppress(OSError),
            socket.create_connection(("127.0.0.1", port), timeout=1),
        ):
            return
        time.sleep(0.1)
    raise RuntimeError(f"gunicorn on port {port} did not start")


@contextlib.contextmanager
def servers(
    chosen: t.Sequence[Variant], urls: Urls, logs: str
) -> t.Iterator[dict[str | None, int]]:
    """Start one gunicorn per variant (and one bare); stop them all at the end.

    Each server's output goes to ``logs/gunicorn-<variant>.log``.
    """
    os.makedirs(logs, exist_ok=True)
    everything: list[Variant] = [Variant(kind="bare"), *chosen]
    envs = [_env(v, url_for(v, urls, "http")) for v in everything]
    # Tables are created once, before the workers start, not by each worker.
    for variant, env in zip(everything, envs, strict=True):
        if variant.kind == "fmd":  # its configuration is global: another process
            command = [sys.executable, "-m", "benchmarks.apps", "prepare"]
            subprocess.run(command, env=env, cwd=ROOT, check=True)
        elif variant.db is not None:
            built = build(variant, env["BENCH_URL"])
            if built.telemetry is not None:
                with built.app.app_context():
                    built.telemetry.shutdown(1.0)
    ports: dict[str | None, int] = {}
    processes: list[subprocess.Popen[bytes]] = []
    try:
        for variant, env in zip(everything, envs, strict=True):
            port = free_port()
            command = [
                sys.executable,
                "-m",
                "gunicorn",
                f"--workers={WORKERS}",
                f"--bind=127.0.0.1:{port}",
                "--log-level=warning",
                "--backlog=2048",
                *_quiet(),
                "benchmarks.apps:wsgi()",
            ]
            log = open(os.path.join(logs, f"gunicorn-{variant.key}.log"), "wb")  # noqa: SIM115
            with log:
                processes.append(
                    subprocess.Popen(
                        command, env=env, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT
                    )
                )
            ports[None if variant.kind == "bare" else variant.key] = port
        for process, port in zip(processes, ports.values(), strict=True):
            _wait_listening(port, process)
        yield ports
    finally:
        for process in processes:
            with contextlib.suppress(ProcessLookupError):
                process.send_signal(signal.SIGTERM)
        for process in processes:
            try:
                process.wait(30)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


class LoadGenerator:
    """The load generator process and its line protocol."""

    def __init__(self) -> None:
        self.process = subprocess.Popen(
            [sys.executable, "-m", "benchmarks.loadgen"],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
            cwd=ROOT,
        )

    def run(self, port: int, requests: int, max_seconds: float = 60.0) -> Block:
        """Send ``requests`` requests to ``port``; return the measured block."""
        assert self.process.stdin is not None
        assert self.process.stdout is not None
        command = {
            "port": port,
            "requests": requests,
            "concurrency": CONCURRENCY,
            "max_seconds": max_seconds,
        }
        self.process.stdin.write(json.dumps(command) + "\n")
        self.process.stdin.flush()
        answer = json.loads(self.process.stdout.readline())
        return Block(
            seconds=answer["seconds"],
            n=answer["n"],
            p50=answer["p50"],
            p99=answer["p99"],
            errors=answer["errors"],
        )

    def close(self) -> None:
        """End the generator (it stops when its stdin closes)."""
        assert self.process.stdin is not None
        self.process.stdin.close()
        self.process.wait(30)


def run(
    urls: Urls, *, rounds: int, requests: int, max_seconds: float, logs: str
) -> tuple[list[Variant], dict[str, list[Relative]], list[Block]]:
    """Run the interleaved rounds against every server."""
    # The request path alone (an idle writer) is an in-process measurement;
    # servers run with the default settings, the writer keeping up.
    chosen = [v for v in variants() if v.kind != "async-idle"]
    load = LoadGenerator()
    try:
        with servers(chosen, urls, logs) as ports:
            for port in ports.values():
                load.run(port, 200)  # warm-up: imports, first connections

            def block(key: str | None) -> Block:
                result = load.run(ports[key], requests, max_seconds)
                if result.errors:
                    raise RuntimeError(f"{key}: {result.errors} requests failed")
                return result

            ratios, bares = interleaved([v.key for v in chosen], rounds, block)
    finally:
        load.close()
    return chosen, ratios, bares

"""The flask_telemetry benchmark: overhead next to a bare app and to its peers.

Run it with ``make bench`` (or ``python -m benchmarks [--quick]``). See
``benchmarks/README.rst`` for what each table measures.
"""

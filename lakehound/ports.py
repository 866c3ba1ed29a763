"""Free loopback ports for the servers the tests and benchmarks start (Kafka, Thrift,
the endpoint, a standalone cluster)."""

from __future__ import annotations

import socket


def free_port(adjacent: int = 1) -> int:
    """A loopback port that is free now, with the ``adjacent - 1`` ports after it free too.

    Kafka in KRaft mode needs two adjacent ports (client, controller). Another process
    may still take a port between this call and the server's bind: callers start the
    server at once, and a failed bind is reported by the server itself.
    """
    for _ in range(50):
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = int(s.getsockname()[1])
        try:
            for extra in range(1, adjacent):
                with socket.socket() as s2:
                    s2.bind(("127.0.0.1", port + extra))
        except OSError:
            continue
        return port
    raise RuntimeError(f"no run of {adjacent} free loopback ports")

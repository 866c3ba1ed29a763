import socket

from lakehound.ports import free_port


def test_free_port_and_its_neighbours_can_be_bound() -> None:
    port = free_port(adjacent=3)
    socks = []
    try:
        for p in range(port, port + 3):
            s = socket.socket()
            socks.append(s)
            s.bind(("127.0.0.1", p))  # raises OSError if a port of the run is taken
    finally:
        for s in socks:
            s.close()

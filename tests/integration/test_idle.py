"""Idle connections on the userspace tier are parked: after a second without a byte either way
ktlsd cancels their recvs, frees their buffers and waits with polls. These tests prove a parked
connection wakes up for bytes from either side and still half-closes correctly."""
import socket
import threading
import time

from conftest import TcpBackend, client_context, tls_config

PARK_WAIT = 1.6  # PARK_MS (1 s) plus the worker's 100 ms tick, with room


def tls_connect(port):
    raw = socket.create_connection(("127.0.0.1", port), timeout=10)
    return client_context().wrap_socket(raw, server_hostname="localhost")


def recv_exact(s, n):
    data = b""
    while len(data) < n:
        chunk = s.recv(n - len(data))
        assert chunk, "connection closed after %d of %d bytes" % (len(data), n)
        data += chunk
    return data


def test_parked_connection_wakes_for_client_bytes(daemon_factory):
    def echo(c):
        with c:
            while (b := c.recv(65536)):
                c.sendall(b)

    b = TcpBackend(echo)
    d = daemon_factory(tls_config([b.addr]))
    with tls_connect(d.ports[0]) as s:
        s.sendall(b"x")
        assert recv_exact(s, 1) == b"x"
        time.sleep(PARK_WAIT)
        d.wait_log("parked")
        payload = bytes(range(256)) * 256  # 64 KiB at a time: buffers come back, fill, drain
        for _ in range(4):
            s.sendall(payload)
            assert recv_exact(s, len(payload)) == payload


def test_parked_connection_wakes_for_backend_bytes_and_half_closes(daemon_factory):
    got_eof = threading.Event()

    def late_reply(c):
        with c:
            assert c.recv(1) == b"q"
            time.sleep(PARK_WAIT + 0.5)  # the connection parks while the backend "thinks"
            c.sendall(b"late answer")
            if c.recv(1) == b"":
                got_eof.set()

    b = TcpBackend(late_reply)
    d = daemon_factory(tls_config([b.addr]))
    with tls_connect(d.ports[0]) as s:
        s.sendall(b"q")
        assert recv_exact(s, len(b"late answer")) == b"late answer"
        assert "parked" in d.log()
        s.shutdown(socket.SHUT_WR)  # a FIN, no close_notify: ktlsd forwards it as one
        assert got_eof.wait(5), "the client's close did not reach the backend"

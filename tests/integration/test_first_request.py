"""The first request on a new connection is not held back by the client's Nagle.

A client that leaves Nagle on (Python's ssl and urllib, Java's default sockets, many embedded
stacks) sends its Finished, then its request: Nagle holds the request until the Finished is
ACKed. In TLS 1.3 without session tickets, and in a resumed TLS 1.2 handshake, the server sends
nothing after the client's Finished, so that ACK must not wait for the delayed-ACK timer (about
40 ms on Linux). ktlsd ACKs at once when the handshake ends (docs/notes/tcp.md, "The first
request"); these tests time new connections, one request each, with Nagle left on."""
import socket
import ssl
import statistics
import time

import pytest

from conftest import TcpBackend, client_context, tls_config

RESPONSE = b"HTTP/1.0 200 OK\r\nContent-Length: 1024\r\n\r\n" + b"x" * 1024
REQUESTS = 20
BOUND_MS = 10.0  # the stall is ~40 ms; a request through loopback takes well under 1 ms


def answer_one(c):
    """Reads one request head, answers 1 KiB and closes (HTTP/1.0)."""
    c.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    data = b""
    with c:
        while b"\r\n\r\n" not in data:
            chunk = c.recv(4096)
            if not chunk:
                return
            data += chunk
        c.sendall(RESPONSE)


def one_request(port, ctx, nodelay, session=None):
    """Milliseconds from connect to the whole response over a new TLS connection (resuming
    session if given), and the connection's session and whether it was resumed."""
    t0 = time.monotonic()
    with socket.create_connection(("127.0.0.1", port), timeout=5) as raw:
        if nodelay:
            raw.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        with ctx.wrap_socket(raw, server_hostname="localhost", session=session) as s:
            s.sendall(b"GET / HTTP/1.0\r\nHost: localhost\r\n\r\n")
            data = b""
            while len(data) < len(RESPONSE):
                chunk = s.recv(65536)
                if not chunk:
                    break
                data += chunk
            resumed, session = s.session_reused, s.session
    assert data == RESPONSE
    return (time.monotonic() - t0) * 1000, session, resumed


def median_ms(port, ctx, nodelay=False):
    one_request(port, ctx, nodelay)  # warm-up
    return statistics.median(one_request(port, ctx, nodelay)[0] for _ in range(REQUESTS))


@pytest.mark.parametrize("version", [ssl.TLSVersion.TLSv1_3, ssl.TLSVersion.TLSv1_2])
def test_nagle_client_first_request_is_not_delayed(daemon_factory, version):
    backend = TcpBackend(answer_one)
    d = daemon_factory(tls_config([backend.addr]))
    ctx = client_context()
    ctx.minimum_version = ctx.maximum_version = version
    ms = median_ms(d.ports[0], ctx)
    assert ms < BOUND_MS, "median %.1f ms per new-connection request with Nagle on" % ms


def test_nagle_client_resumed_tls12_first_request_is_not_delayed(daemon_factory):
    """A resumed TLS 1.2 handshake ends with the client's Finished too (the server's comes
    first), so it is the TLS 1.3 case again."""
    backend = TcpBackend(answer_one)
    d = daemon_factory(tls_config([backend.addr], session_resumption=True))
    ctx = client_context()
    ctx.maximum_version = ssl.TLSVersion.TLSv1_2
    port = d.ports[0]
    times = []
    session = None
    for _ in range(REQUESTS + 1):
        ms, session, resumed = one_request(port, ctx, False, session)
        if resumed:
            times.append(ms)
    assert len(times) >= REQUESTS - 1, "only %d of %d connections resumed" % (len(times),
                                                                            REQUESTS)
    ms = statistics.median(times)
    assert ms < BOUND_MS, "median %.1f ms per resumed request with Nagle on" % ms

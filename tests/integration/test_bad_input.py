"""Bad input gets a clear answer and loses nothing: garbage, truncated and stalled handshakes,
resets, refusing/resetting/early-closing backends, half-closes, slow readers. After each, the same
daemon still serves a well-behaved client."""
import hashlib
import socket
import ssl
import struct
import subprocess
import threading
import time

import pytest

from conftest import (TcpBackend, client_context, free_port, https_get, recv_all, tls_config,
                      wait_port)
from ctl_client import ctl


def still_serves(d):
    status, body = https_get(d.ports[0], "/still-alive")
    assert status == 200 and b"path=/still-alive" in body


def client_hello_bytes():
    """A real ClientHello, captured from Python's ssl over memory BIOs."""
    ctx = ssl.create_default_context()
    inc, out = ssl.MemoryBIO(), ssl.MemoryBIO()
    obj = ctx.wrap_bio(inc, out, server_hostname="localhost")
    with pytest.raises(ssl.SSLWantReadError):
        obj.do_handshake()
    return out.read()


def test_garbage_instead_of_client_hello_is_closed(daemon):
    with socket.create_connection(("127.0.0.1", daemon.ports[0])) as s:
        s.sendall(b"GET / HTTP/1.0\r\nHost: plaintext-by-mistake\r\n\r\n")
        data = recv_all(s)
    # Either nothing or a TLS alert record (content type 21), then the close.
    assert data == b"" or data[0] == 21
    daemon.wait_log("result=error:")
    still_serves(daemon)


def test_truncated_handshake_then_close(daemon):
    hello = client_hello_bytes()
    with socket.create_connection(("127.0.0.1", daemon.ports[0])) as s:
        s.sendall(hello[: len(hello) // 2])
        s.shutdown(socket.SHUT_WR)
        data = recv_all(s)
    assert data == b"" or data[0] == 21
    daemon.wait_log("sni=- cert=- proto=-")
    still_serves(daemon)


@pytest.mark.parametrize("part,result", [(20, "client hello timeout"),
                                         (None, "handshake timeout")])
def test_stalled_handshake_times_out(backend, daemon_factory, part, result):
    """A client that stops inside its ClientHello, or after it (never answering the server's
    flight), is closed at handshake_ms (client_hello_ms is the smaller here, at its default)."""
    d = daemon_factory(tls_config([backend.addr], timeouts={"handshake_ms": 500}))
    hello = client_hello_bytes()
    with socket.create_connection(("127.0.0.1", d.ports[0])) as s:
        s.sendall(hello[:part])
        start = time.monotonic()
        data = recv_all(s, timeout=5)
        assert time.monotonic() - start < 3
    assert (data == b"") == (part is not None)  # the whole hello got the server's flight
    d.wait_log("result=" + result)
    still_serves(d)


def test_client_reset_mid_transfer(daemon):
    with socket.create_connection(("127.0.0.1", daemon.ports[0])) as raw:
        s = client_context().wrap_socket(raw, server_hostname="localhost")
        s.sendall(b"GET /bytes/%d HTTP/1.1\r\nHost: x\r\n\r\n" % (64 << 20))
        got = 0
        while got < (1 << 20):
            got += len(s.recv(65536))
        s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        s.close()
    daemon.wait_log("closed: client reset")
    still_serves(daemon)


def test_refusing_server_is_skipped_for_the_next(backend, daemon_factory):
    dead = "127.0.0.1:%d" % free_port()
    d = daemon_factory(tls_config([dead, backend.addr], port=None))
    d.config = None
    for _ in range(4):  # round robin starts at each server in turn
        status, _ = https_get(d.ports[0])
        assert status == 200
    d.wait_log("backend %s: connect: Connection refused (trying the next server)" % dead)


def test_all_servers_refuse_clean_close(daemon_factory):
    dead = ["127.0.0.1:%d" % free_port() for _ in range(2)]
    d = daemon_factory(tls_config(dead))
    with socket.create_connection(("127.0.0.1", d.ports[0])) as raw:
        with client_context().wrap_socket(raw, server_hostname="localhost") as s:
            s.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
            # A clean TLS close (close_notify): recv returns b"" rather than raising.
            assert s.recv(100) == b""
    d.wait_log("result=backend-unreachable")


def test_connect_timeout_tries_next(backend, daemon_factory):
    # A loopback listener whose accept queue is full drops SYNs: a connect to it hangs.
    hang = socket.socket()
    hang.bind(("127.0.0.1", 0))
    hang.listen(0)
    fillers = []
    for _ in range(3):
        f = socket.socket()
        f.setblocking(False)
        f.connect_ex(hang.getsockname())
        fillers.append(f)
    time.sleep(0.2)
    blackhole = "127.0.0.1:%d" % hang.getsockname()[1]
    d = daemon_factory(tls_config([blackhole, backend.addr], timeouts={"connect_ms": 300},
                                  ))
    start = time.monotonic()
    for _ in range(2):  # round robin: one of the two requests starts at the hanging server
        assert https_get(d.ports[0])[0] == 200
    assert time.monotonic() - start < 5
    d.wait_log("backend %s: connect: timed out (trying the next server)" % blackhole)
    for f in fillers:
        f.close()
    hang.close()


def test_backend_reset_closes_client(daemon_factory):
    def rst(c):
        c.recv(100)
        c.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        c.close()

    b = TcpBackend(rst)
    d = daemon_factory(tls_config([b.addr]))
    with socket.create_connection(("127.0.0.1", d.ports[0])) as raw:
        with client_context().wrap_socket(raw, server_hostname="localhost") as s:
            s.sendall(b"hello")
            s.settimeout(5)
            try:
                assert s.recv(100) == b""
            except (ConnectionResetError, ssl.SSLError):
                pass  # an abrupt close is the honest answer to a backend reset
    d.wait_log("closed: backend reset")


def test_backend_early_close_delivers_everything_then_close_notify(daemon_factory):
    payload = bytes(range(256)) * 4096  # 1 MiB

    def early(c):
        c.sendall(payload)
        c.close()  # before the client said anything

    b = TcpBackend(early)
    d = daemon_factory(tls_config([b.addr]))
    with socket.create_connection(("127.0.0.1", d.ports[0])) as raw:
        with client_context().wrap_socket(raw, server_hostname="localhost") as s:
            assert recv_all(s) == payload  # ends with close_notify: no exception


def test_client_half_close_reaches_backend_and_reply_comes_back(daemon_factory):
    def sink_then_reply(c):
        h = hashlib.sha256()
        n = 0
        while True:
            chunk = c.recv(65536)
            if not chunk:
                break
            h.update(chunk)
            n += len(chunk)
        c.sendall(("%s %d" % (h.hexdigest(), n)).encode())
        c.close()

    b = TcpBackend(sink_then_reply)
    d = daemon_factory(tls_config([b.addr]))
    data = b"x" * (3 << 20) + b"end"
    # TCP FIN from the client (no close_notify)
    with socket.create_connection(("127.0.0.1", d.ports[0])) as raw:
        with client_context().wrap_socket(raw, server_hostname="localhost") as s:
            s.sendall(data)
            socket.socket.shutdown(s, socket.SHUT_WR)  # TCP FIN, the TLS session stays
            assert recv_all(s).decode() == "%s %d" % (hashlib.sha256(data).hexdigest(),
                                                      len(data))
    # close_notify from the client: gnutls-cli ends its input with a TLS half-close (bye WR)
    out = subprocess.run(["gnutls-cli", "--x509cafile", __import__("conftest").fixture("ca.pem"),
                          "-p", str(d.ports[0]), "localhost"],
                         input=data, capture_output=True, timeout=30)
    assert ("%s %d" % (hashlib.sha256(data).hexdigest(), len(data))).encode() in out.stdout


def test_slow_reader_does_not_grow_memory(daemon):
    """256 MiB offered to a client that does not read: ktlsd must stop reading the backend."""
    with socket.create_connection(("127.0.0.1", daemon.ports[0])) as raw:
        raw.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 65536)
        s = client_context().wrap_socket(raw, server_hostname="localhost")
        s.sendall(b"GET /bytes/%d HTTP/1.1\r\nHost: x\r\n\r\n" % (256 << 20))
        s.recv(1000)
        base = daemon.rss_kib()
        time.sleep(3)  # the backend would push 256 MiB in well under this
        grown = daemon.rss_kib() - base
        assert grown < 16 * 1024, "RSS grew by %d KiB while the client did not read" % grown
        got = 0
        s.settimeout(10)
        while got < (8 << 20):  # and the stream resumes when the client reads again
            got += len(s.recv(1 << 20))
    still_serves(daemon)


def test_hostile_sni_is_escaped_everywhere(daemon_factory):
    """A ServerName may hold any byte but NUL: spaces, quotes, a newline that would forge a log
    line, terminal escapes. The log line and `ktlsctl connections` show it \\xHH-escaped, and the
    PROXY v2 header carries no authority TLV rather than bytes a backend might misread
    (docs/security.md)."""
    from test_proxy_protocol import parse  # the PROXY header parser

    headers, release = [], threading.Event()

    def handle(c):
        with c:
            headers.append(parse(c))
            c.recv(5)
            c.sendall(b"ok")
            release.wait(10)

    b = TcpBackend(handle)
    d = daemon_factory(tls_config([b.addr], proxy_protocol="v2"))
    sni = 'evil host\n"x"\x1b[31m.example'
    escaped = r"evil\x20host\x0a\x22x\x22\x1b\x5b31m.example"
    ctx = client_context()
    ctx.check_hostname = False  # the name is the attack; the chain is still verified
    with socket.create_connection(("127.0.0.1", d.ports[0]), timeout=10) as raw:
        s = ctx.wrap_socket(raw, server_hostname=sni)
        s.sendall(b"hello")
        assert s.recv(2) == b"ok"
        conns = ctl(d.ctl_path, {"cmd": "connections"})["connections"]
        release.set()
    assert [c["sni"] for c in conns] == [escaped]
    assert "0x2" not in headers[0]["tlvs"]  # no authority TLV
    d.wait_log("sni=" + escaped)
    log = d.log()
    assert "\"x\"" not in log and "\x1b" not in log and "evil host" not in log

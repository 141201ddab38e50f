"""A client that ends its side right behind its Finished — a TLS health check or a port probe:
handshake, close_notify (or a FIN), close — has nothing to forward, and ktlsd does not connect the
backend for it (as HAProxy does not). A client whose data follows its Finished in the same segment
is forwarded as before. The Finished and what follows are written in one send, so ktlsd finds
them together whatever the scheduling."""
import socket
import ssl
import threading
import time

import pytest

from conftest import TcpBackend, client_context, recv_all, tls_config


def kernel_tls():
    """True when this kernel has the TLS ULP: then ktlsd reads the handshake one record at a
    time and leaves what follows the Finished to the kernel, so it cannot see the close early."""
    with socket.socket() as ls, socket.socket() as c:
        ls.bind(("127.0.0.1", 0))
        ls.listen(1)
        c.connect(ls.getsockname())
        try:
            c.setsockopt(socket.IPPROTO_TCP, 31, b"tls")  # TCP_ULP
            return True
        except OSError:
            return False


class Recorder:
    """A backend that records each connection and everything it receives."""

    def __init__(self):
        self.conns = []
        self.lock = threading.Lock()
        self.tcp = TcpBackend(self.handle)
        self.addr = self.tcp.addr

    def handle(self, c):
        got = bytearray()
        with self.lock:
            self.conns.append(got)
        while True:
            chunk = c.recv(65536)
            if not chunk:
                break
            got += chunk
        c.close()


def handshake_then(port, after):
    """A TLS 1.3 handshake over memory BIOs; then `after(obj)` produces what follows the
    Finished, and the Finished and those bytes go out in one send. Returns what came back."""
    ctx = client_context()
    ctx.minimum_version = ssl.TLSVersion.TLSv1_3
    inc, out = ssl.MemoryBIO(), ssl.MemoryBIO()
    obj = ctx.wrap_bio(inc, out, server_hostname="localhost")
    with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
        while True:
            try:
                obj.do_handshake()
                break
            except ssl.SSLWantReadError:
                if out.pending:
                    s.sendall(out.read())
                data = s.recv(65536)
                assert data, "ktlsd closed during the handshake"
                inc.write(data)
        after(obj)
        s.sendall(out.read())  # Finished + what after() wrote, one segment
        return recv_all(s, 10)


def close_notify(obj):
    try:
        obj.unwrap()
    except ssl.SSLWantReadError:
        pass


def test_probe_without_data_does_not_connect_the_backend(daemon_factory):
    if kernel_tls():
        pytest.skip("kernel TLS present: the bytes after the Finished are left to the kernel")
    b = Recorder()
    d = daemon_factory(tls_config([b.addr]))
    back = handshake_then(d.ports[0], close_notify)
    assert back, "no close_notify came back"
    d.wait_log("backend not connected")
    line = [l for l in d.log().splitlines() if "backend not connected" in l][0]
    assert "result=ok" in line and "backend=-" in line, line
    time.sleep(0.3)
    assert b.conns == [], "the backend was connected for a client that sent nothing"


# Two bytes make a 19-byte record, the size of an alert: ktlsd opens it to look, and must still
# forward it, and still hand the session to its own record layer.
@pytest.mark.parametrize("payload", [b"hello behind the Finished", b"hi"])
def test_data_behind_the_finished_is_forwarded(daemon_factory, payload):
    b = Recorder()
    d = daemon_factory(tls_config([b.addr]))

    def data_then_close(obj):
        obj.write(payload)
        close_notify(obj)

    handshake_then(d.ports[0], data_then_close)
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and not (b.conns and bytes(b.conns[0])):
        time.sleep(0.05)
    time.sleep(0.2)
    assert [bytes(c) for c in b.conns] == [payload]
    assert "backend not connected" not in d.log()
    if not kernel_tls():
        # opened without OpenSSL seeing it, so ktlsd's record layer still takes the session
        # over (bench: an idle connection keeps no SSL)
        assert "records by ktlsd's record layer" in d.log(), d.log()[-2000:]

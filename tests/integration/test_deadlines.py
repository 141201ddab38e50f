"""Every phase of a connection has a deadline, and one source cannot hold everything
(docs/security.md, "Limits"):

- a connection that has not sent its whole ClientHello is closed at timeouts.client_hello_ms,
  while one that has, and is slow to finish, gets all of handshake_ms;
- a connection sending its last records (here the fatal alert for a bad record) to a client that
  reads nothing is closed at timeouts.close_ms, not left until idle_ms;
- limits.per_source.max_connections caps one source's open connections, counted at accept, while
  another source is served."""
import contextlib
import os
import socket
import ssl
import time

from conftest import Backend, client_context, tls_config
from ctl_client import metric, scrape
from test_hostile import client_hello, connect_from, free_port, time_to_eof


def test_silent_connections_are_closed_at_client_hello_ms(daemon_factory, backend):
    cfg = tls_config([backend.addr], timeouts={"client_hello_ms": 500, "handshake_ms": 10000})
    d = daemon_factory(cfg)
    hello = client_hello()
    silent = [connect_from("127.0.0.1", d.ports[0]) for _ in range(10)]
    partial = connect_from("127.0.0.1", d.ports[0])
    partial.sendall(hello[:40])
    whole = connect_from("127.0.0.1", d.ports[0])  # a whole ClientHello, then no Finished
    whole.sendall(hello)
    eof = time_to_eof(silent + [partial], 5)
    try:
        assert len(eof) == 11, "%d connections without a ClientHello outlived it" % (11 - len(eof))
        assert max(eof.values()) < 2.0, max(eof.values())
        assert min(eof.values()) > 0.3, min(eof.values())
        # The one that sent its ClientHello is in its handshake, which has 10 s.
        assert not time_to_eof([whole], 1.0), "closed before handshake_ms"
    finally:
        for s in silent + [partial, whole]:
            s.close()
    d.wait_log("result=client hello timeout")


def test_last_records_to_a_client_that_never_reads_get_close_ms(daemon_factory):
    backend = Backend()
    try:
        cfg = tls_config([backend.addr], timeouts={"idle_ms": 60000, "close_ms": 1000})
        d = daemon_factory(cfg)
        raw = socket.socket()
        raw.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        raw.connect(("127.0.0.1", d.ports[0]))
        s = client_context().wrap_socket(raw, server_hostname="localhost")
        s.sendall(b"GET /bytes/%d HTTP/1.1\r\nHost: x\r\n\r\n" % (256 << 20))
        time.sleep(1.0)  # ktlsd's buffers towards the client fill; the client reads nothing
        # A record that does not open: ktlsd owes the client a bad_record_mac alert, behind
        # everything the client has not read.
        with socket.socket(fileno=os.dup(s.fileno())) as under:
            under.sendall(b"\x17\x03\x03\x00\x20" + os.urandom(32))
        t0 = time.monotonic()
        while "listener=web: closed: " not in d.log() and time.monotonic() < t0 + 10:
            time.sleep(0.05)
        took = time.monotonic() - t0
        assert "TLS error from client" in d.log()
        assert took < 3.0, "the connection outlived close_ms (1 s) by %.1f s" % (took - 1)
        s.close()
    finally:
        backend.stop()


def test_per_source_connections_are_capped_at_accept(daemon_factory, backend):
    cfg = tls_config([backend.addr])
    cfg["limits"] = {"per_source": {"max_connections": 20}}
    mport = free_port()
    cfg["metrics"] = {"bind": "127.0.0.1:%d" % mport}
    d = daemon_factory(cfg)
    held = []
    try:
        for _ in range(20):
            raw = connect_from("127.0.0.21", d.ports[0])
            held.append(client_context().wrap_socket(raw, server_hostname="localhost"))
        # The 21st from that source is closed at accept, without a handshake.
        raw = connect_from("127.0.0.21", d.ports[0])
        with contextlib.suppress(OSError):
            raw.sendall(client_hello())
        raw.settimeout(5)
        with contextlib.suppress(ConnectionResetError):
            assert raw.recv(100) == b""
        raw.close()
        # Another source is served.
        with connect_from("127.0.0.22", d.ports[0]) as raw2:
            with client_context().wrap_socket(raw2, server_hostname="localhost") as s:
                s.sendall(b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
                assert s.recv(100).startswith(b"HTTP/1.1 200")
        assert metric(scrape(mport), "ktlsd_limit_refusals_total", listener="web",
                      limit="source_connections") == 1
        # One closes: that source may open one again.
        held.pop().close()
        time.sleep(0.3)
        raw = connect_from("127.0.0.21", d.ports[0])
        held.append(client_context().wrap_socket(raw, server_hostname="localhost"))
    finally:
        for s in held:
            s.close()

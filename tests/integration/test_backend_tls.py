"""Backend TLS (listeners[].backend_tls): ktlsd opens TLS to real TLS backends (Python's ssl
server and openssl s_server), verifies their chain and name, applies the backend policy, moves
bytes exactly both ways, and closes the client cleanly with one log line on every failure."""
import hashlib
import random
import select
import socket
import ssl
import struct
import subprocess
import threading
import time

import pytest

from conftest import (KTLSD, TcpBackend, client_context, fixture, free_port, tls_config,
                      wait_port)
from ctl_client import metric, scrape


class TlsBackend:
    """A TLS echo server on Python's ssl: records the SNI, version and cipher of each
    connection, and echoes what it reads until the peer closes."""

    def __init__(self, cert="backend-server.chain.pem", key="backend-server.key",
                 max_version=None, prefix=b""):
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.load_cert_chain(fixture(cert), fixture(key))
        if max_version:
            ctx.maximum_version = max_version
        ctx.sni_callback = self._sni
        self.ctx = ctx
        self.prefix = prefix  # bytes read in clear before the handshake (a PROXY header)
        self.seen = []
        self.sni = []
        self.clear = []
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(16)
        self.addr = "127.0.0.1:%d" % self.sock.getsockname()[1]
        threading.Thread(target=self._loop, daemon=True).start()

    def _sni(self, sslobj, name, ctx):
        self.sni.append(name)

    def _loop(self):
        while True:
            try:
                c, _ = self.sock.accept()
            except OSError:
                return
            threading.Thread(target=self._serve, args=(c,), daemon=True).start()

    def _serve(self, raw):
        try:
            if self.prefix:
                line = b""
                while not line.endswith(b"\r\n"):
                    line += raw.recv(1)
                self.clear.append(line)
            s = self.ctx.wrap_socket(raw, server_side=True)
            self.seen.append((s.version(), s.cipher()[0]))
            while True:
                d = s.recv(1 << 16)
                if not d:
                    break
                s.sendall(d)
            s.unwrap()
        except (OSError, ssl.SSLError):
            pass
        finally:
            raw.close()


def blocks(n, seed):
    rng = random.Random(seed)
    while n:
        k = min(n, 1 << 20)
        yield rng.randbytes(k)
        n -= k


def echo_exchange(port, n, seed=1, timeout=120):
    """Sends n bytes through ktlsd to an echo backend while reading the echo; returns the
    SHA-256 of what was sent and of what came back."""
    raw = socket.create_connection(("127.0.0.1", port), timeout=timeout)
    s = client_context().wrap_socket(raw, server_hostname="localhost")
    s.setblocking(False)
    gen = blocks(n, seed)
    hs, hr = hashlib.sha256(), hashlib.sha256()
    pending, sent, got = b"", 0, 0
    deadline = time.monotonic() + timeout
    try:
        while got < n:
            assert time.monotonic() < deadline, "echo stalled at %d/%d" % (got, n)
            if not pending and sent < n:
                pending = next(gen)
                hs.update(pending)
            select.select([s], [s] if pending else [], [], 1.0)
            if pending:
                try:
                    k = s.send(pending[:1 << 16])
                    pending = pending[k:]
                    sent += k
                except (ssl.SSLWantWriteError, ssl.SSLWantReadError):
                    pass
            try:
                while True:
                    d = s.recv(1 << 20)
                    if not d:
                        raise AssertionError("EOF after %d of %d bytes" % (got, n))
                    hr.update(d)
                    got += len(d)
            except (ssl.SSLWantReadError, ssl.SSLWantWriteError):
                pass
    finally:
        s.close()
    return hs.hexdigest(), hr.hexdigest()


def btls_config(backend, **btls):
    """A tls listener with backend TLS to backend and a metrics endpoint."""
    conf = {"enabled": True, "ca_file": "backend-ca.pem", "sni": "app.internal"}
    conf.update(btls)
    conf = {k: v for k, v in conf.items() if v is not None}
    cfg = tls_config([backend.addr], backend_tls=conf)
    cfg["metrics"] = {"bind": "127.0.0.1:%d" % free_port()}
    return cfg


def expect_clean_close(port):
    """The client's handshake succeeds, then ktlsd ends the connection with close_notify (a
    clean EOF for Python's ssl, not SSLEOFError)."""
    with socket.create_connection(("127.0.0.1", port), timeout=10) as raw:
        with client_context().wrap_socket(raw, server_hostname="localhost") as s:
            s.sendall(b"hello")
            assert s.recv(100) == b""


def btls_failures(d, reason):
    mport = int(d.config["metrics"]["bind"].rsplit(":", 1)[1])
    return metric(scrape(mport), "ktlsd_backend_tls_failures_total", listener="web",
                  reason=reason)


@pytest.mark.parametrize("size", [3 << 20, 64 << 20], ids=["3MiB", "64MiB"])
def test_verified_backend_byte_exact_both_ways(size, daemon_factory):
    b = TlsBackend()
    cfg = btls_config(b)
    d = daemon_factory(cfg)
    sent, back = echo_exchange(d.ports[0], size, seed=size)
    assert sent == back
    assert b.sni == ["app.internal"]
    # the default backend policy ELBSecurityPolicy-2016-08 allows TLS 1.2 at most; the
    # backend (Python's ssl prefers its own order) picks among the policy's ciphers
    assert len(b.seen) == 1 and b.seen[0][0] == "TLSv1.2", b.seen
    assert b.seen[0][1] in ("ECDHE-ECDSA-AES128-GCM-SHA256", "ECDHE-ECDSA-AES256-GCM-SHA384")
    d.wait_log("backend_tls=TLSv1.2/%s" % b.seen[0][1])
    d.wait_log("tier=userspace backend=%s backend_tls=" % b.addr)


def test_backend_policy_tls13_and_a_tls12_cipher(daemon_factory):
    """The backend policy decides what ktlsd offers: a TLS 1.3 policy gets TLS 1.3, a custom
    TLS 1.2 policy gets its cipher."""
    b = TlsBackend()
    d = daemon_factory(btls_config(b, security_policy="ELBSecurityPolicy-TLS13-1-3-2021-06"))
    sent, back = echo_exchange(d.ports[0], 1 << 20)
    assert sent == back
    assert b.seen[0][0] == "TLSv1.3"
    b2 = TlsBackend()
    cfg = btls_config(b2, security_policy="b12")
    cfg["security_policies"] = {"b12": {"versions": ["TLSv1.2"],
                                        "ciphers": ["ECDHE-ECDSA-AES256-GCM-SHA384"]}}
    d2 = daemon_factory(cfg)
    sent, back = echo_exchange(d2.ports[0], 1 << 20)
    assert sent == back
    assert b2.seen == [("TLSv1.2", "ECDHE-ECDSA-AES256-GCM-SHA384")]


def test_backend_below_the_policy_fails_cleanly(daemon_factory):
    """A backend that only speaks TLS 1.2 under a TLS 1.3-only backend policy: no handshake; the
    client gets close_notify, the log says why, the metric counts it."""
    b = TlsBackend(max_version=ssl.TLSVersion.TLSv1_2)
    cfg = btls_config(b, security_policy="ELBSecurityPolicy-TLS13-1-3-2021-06")
    d = daemon_factory(cfg)
    expect_clean_close(d.ports[0])
    d.wait_log("result=backend TLS handshake failed: ")
    assert btls_failures(d, "handshake") == 1
    assert b.seen == []


@pytest.mark.parametrize("case", ["wrong-ca", "wrong-name", "self-signed"])
def test_verification_failures_close_cleanly(case, daemon_factory):
    if case == "wrong-ca":
        b = TlsBackend()
        cfg = btls_config(b, ca_file="ca.pem")
        why = "backend certificate verify failed: "
    elif case == "wrong-name":
        b = TlsBackend()
        cfg = btls_config(b, sni="db.internal")
        why = "backend certificate verify failed: hostname mismatch"
    else:
        b = TlsBackend(cert="backend-self.pem", key="backend-self.key")
        cfg = btls_config(b)
        why = "backend certificate verify failed: "
    d = daemon_factory(cfg)
    expect_clean_close(d.ports[0])
    d.wait_log("result=" + why)
    line = [l for l in d.log().splitlines() if "result=backend certificate" in l][0]
    assert "proto=TLSv1.3" in line  # the client's own handshake was fine
    assert btls_failures(d, "verify") == 1
    assert btls_failures(d, "handshake") == 0
    assert b.seen == []


def test_verify_false_accepts_a_self_signed_backend(daemon_factory):
    b = TlsBackend(cert="backend-self.pem", key="backend-self.key")
    d = daemon_factory(btls_config(b, verify=False, ca_file=None, sni=None))
    sent, back = echo_exchange(d.ports[0], 2 << 20)
    assert sent == back
    assert b.sni == [None]  # no sni configured: none sent


def test_backend_not_speaking_tls(daemon_factory):
    """A plaintext backend answering the ClientHello with HTTP, one that resets the connection,
    and one that says nothing."""
    def http(c):
        c.recv(4096)
        c.sendall(b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\n\r\n")
        c.close()

    def silent(c):
        time.sleep(5)
        c.close()

    def reset(c):
        c.recv(4096)
        c.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        c.close()

    for handle, why, reason in [(http, "backend TLS handshake failed: ", "handshake"),
                                (reset, "backend TLS handshake failed: the backend reset the "
                                 "connection", "handshake"),
                                (silent, "backend TLS handshake timed out", "timeout")]:
        b = TcpBackend(handle)
        cfg = btls_config(b, verify=False, ca_file=None)
        cfg["listeners"][0]["timeouts"] = {"connect_ms": 500}
        d = daemon_factory(cfg)
        t0 = time.monotonic()
        expect_clean_close(d.ports[0])
        if reason == "timeout":
            assert 0.4 < time.monotonic() - t0 < 3
        d.wait_log("result=" + why)
        assert btls_failures(d, reason) == 1


def test_proxy_header_goes_in_clear_before_the_client_hello(daemon_factory):
    b = TlsBackend(prefix=b"PROXY")
    cfg = btls_config(b)
    cfg["listeners"][0]["proxy_protocol"] = "v1"
    d = daemon_factory(cfg)
    sent, back = echo_exchange(d.ports[0], 1 << 20)
    assert sent == back
    assert b.clear and b.clear[0].startswith(b"PROXY TCP4 127.0.0.1 127.0.0.1 ")


def test_openssl_s_server_backend(daemon_factory, tmp_path):
    """openssl s_server as the backend: what the client sends arrives on its stdout, what is
    written to its stdin arrives at the client, byte for byte."""
    port = free_port()
    # two accepts: wait_port's probe is the first
    srv = subprocess.Popen(["openssl", "s_server", "-accept", "127.0.0.1:%d" % port,
                            "-cert", fixture("backend-server.chain.pem"),
                            "-key", fixture("backend-server.key"), "-quiet", "-naccept", "2"],
                           stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                           stderr=subprocess.DEVNULL)
    wait_port(port, proc=srv)
    d = daemon_factory(tls_config(["127.0.0.1:%d" % port],
                                  backend_tls={"enabled": True, "ca_file": "backend-ca.pem",
                                               "sni": "app.internal"}))
    up = b"".join(b"up %08d %s\n" % (i, b"x" * 100) for i in range(8000))
    down = b"".join(b"down %08d %s\n" % (i, b"y" * 100) for i in range(8000))
    out = []
    reader = threading.Thread(target=lambda: out.append(srv.stdout.read(len(up))), daemon=True)
    reader.start()
    with socket.create_connection(("127.0.0.1", d.ports[0]), timeout=30) as raw:
        with client_context().wrap_socket(raw, server_hostname="localhost") as s:
            s.sendall(up)
            srv.stdin.write(down)
            srv.stdin.flush()
            got = b""
            while len(got) < len(down):
                chunk = s.recv(1 << 16)
                assert chunk, "EOF after %d bytes" % len(got)
                got += chunk
    reader.join(30)
    srv.kill()
    srv.wait()
    assert got == down
    assert out and out[0] == up
    d.wait_log("backend_tls=TLSv1.2/")


def check(cfg, tmp_path):
    import json
    path = tmp_path / "c.json"
    cfg["certificates"]["ec"] = {"cert": fixture("server-ec.chain.pem"),
                                 "key": fixture("server-ec.key")}
    path.write_text(json.dumps(cfg))
    r = subprocess.run([KTLSD, "--check", "-c", str(path)], capture_output=True, timeout=30)
    return r.returncode, (r.stdout + r.stderr).decode(), str(path)


def test_config_errors_name_file_and_path(tmp_path):
    for btls, extra, needle in [
            ({"ca_file": "/nonexistent/ca.pem"}, {},
             "listeners[0].backend_tls.ca_file: /nonexistent/ca.pem: No such file or directory"),
            ({"ca_file": fixture("server-ec.key")}, {},
             "listeners[0].backend_tls.ca_file: %s: no usable CA certificate"
             % fixture("server-ec.key")),
            ({"ca_file": fixture("backend-ca.pem"), "security_policy": "NoSuchPolicy"}, {},
             "listeners[0].backend_tls.security_policy: "),
            ({"ca_file": fixture("backend-ca.pem")}, {"datapath": "ktls-splice"},
             "listeners[0].datapath: \"ktls-splice\" cannot carry backend_tls")]:
        cfg = tls_config(["127.0.0.1:1"], **extra)
        cfg["listeners"][0]["backend_tls"] = dict({"enabled": True, "sni": "app.internal"},
                                                  **btls)
        rc, out, path = check(cfg, tmp_path)
        assert rc != 0 and (path + ": " + needle) in out, out

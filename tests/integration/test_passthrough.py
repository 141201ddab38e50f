"""tls-passthrough listeners: ktlsd reads the SNI of the ClientHello without terminating TLS,
routes to the backend its "routes" name (exact, wildcard, default), and forwards the bytes
untouched. The backends are real TLS servers with their own CAs (tests/fixtures/gen-passthrough.sh),
so a client that verifies with one backend's CA and host name proves which backend answered.
Also: byte-exact bulk both ways, a ClientHello sent one byte per segment, garbage, SSLv2-style
and oversized hellos refused with a log line, a stalled hello closed by handshake_ms, and the
PROXY v2 header carrying the SNI."""
import json
import os
import socket
import ssl
import struct
import subprocess
import time

import pytest

from conftest import KTLSD, TcpBackend, fixture, free_port, ssl_duplex, wait_port
from test_proxy_protocol import parse as parse_proxy

import demo_backend

ROUTES = {"a": "a.example.com", "b": "*.pets.example.org"}


def pt(name):
    return fixture(os.path.join("passthrough", name))


class TlsBackend:
    """A TLS server with its own certificate. After the handshake it reads one line:
    "name\\n" → replies "backend <name>"; "bulk UP DOWN SEED\\n" → sends DOWN bytes of
    demo_backend's stream (seed SEED) while reading UP bytes, then the sha256 hex of what it read.
    With proxy=True it first reads a PROXY header and records it."""

    def __init__(self, name, proxy=False):
        self.name, self.proxy, self.headers = name, proxy, []
        self.ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        self.ctx.load_cert_chain(pt(name + ".chain.pem"), pt(name + ".key"))
        self.tcp = TcpBackend(self.handle)
        self.addr = self.tcp.addr

    def handle(self, raw):
        with raw:
            if self.proxy:
                self.headers.append(parse_proxy(raw))
            try:
                s = self.ctx.wrap_socket(raw, server_side=True)
            except (ssl.SSLError, OSError):
                return
            with s:
                line = b""
                while not line.endswith(b"\n"):
                    chunk = s.recv(1)
                    if not chunk:
                        return
                    line += chunk
                words = line.split()
                if words[0] == b"bulk":
                    up, down, seed = (int(w) for w in words[1:])
                    sha, _ = ssl_duplex(s, demo_backend.stream_blocks(down, seed), up)
                    s.sendall(sha.encode())
                else:
                    s.sendall(b"backend " + self.name.encode())


@pytest.fixture(scope="module")
def backends():
    return {n: TlsBackend(n) for n in ("a", "b", "c")}


def pt_config(backends, default="c", routes=ROUTES, **listener):
    l = {"name": "pt", "bind": "127.0.0.1:%d" % free_port(), "protocol": "tls-passthrough",
         "routes": [{"sni": sni, "backend": b} for b, sni in routes.items()]}
    if default:
        l["backend"] = default
    l.update(listener)
    return {"listeners": [l],
            "backends": {n: {"servers": [b.addr]} for n, b in backends.items()},
            "drain_timeout_ms": 2000}


def client_ctx(backend, check_hostname=True):
    ctx = ssl.create_default_context(cafile=pt("ca-%s.pem" % backend))
    ctx.check_hostname = check_hostname
    return ctx


def ask(port, sni, backend, check_hostname=True):
    """Connects with SNI sni, verifying backend's certificate; returns its reply."""
    ctx = client_ctx(backend, check_hostname)
    with socket.create_connection(("127.0.0.1", port), timeout=10) as raw:
        with ctx.wrap_socket(raw, server_hostname=sni) as s:
            s.sendall(b"name\n")
            return s.recv(100).decode()


def closed_by_peer(s, timeout=5):
    """True when the peer closes (FIN or reset) within timeout without sending anything."""
    s.settimeout(timeout)
    try:
        return s.recv(100) == b""
    except ConnectionResetError:
        return True


def test_routes_exact_wildcard_and_default(backends, daemon_factory):
    d = daemon_factory(pt_config(backends))
    port = d.ports[0]
    assert ask(port, "a.example.com", "a") == "backend a"
    assert ask(port, "A.Example.COM", "a") == "backend a"  # docs/configuration.md: case-insensitive
    assert ask(port, "cats.pets.example.org", "b") == "backend b"
    # a wildcard is one label: deeper names and unknown names go to the default backend
    assert ask(port, "x.cats.pets.example.org", "c", check_hostname=False) == "backend c"
    assert ask(port, "nobody.example.com", "c", check_hostname=False) == "backend c"
    assert ask(port, None, "c", check_hostname=False) == "backend c"
    assert ask(port, "default.example.net", "c") == "backend c"
    # datapath auto: the sockmap tier where this kernel has it, else userspace
    d.wait_log("sni=a.example.com route=exact backend=a server=%s tier=%s"
               % (backends["a"].addr, "userspace" if "BPF sockmap not used" in d.log()
                  else "sockmap"))
    d.wait_log("sni=cats.pets.example.org route=wildcard backend=b")
    d.wait_log("sni=nobody.example.com route=default backend=c")
    d.wait_log("sni=- route=no-sni backend=c")


def test_real_clients_verify_the_backend_certificate(backends, daemon_factory):
    d = daemon_factory(pt_config(backends))
    port = d.ports[0]
    r = subprocess.run(["openssl", "s_client", "-connect", "127.0.0.1:%d" % port,
                        "-servername", "a.example.com", "-verify_hostname", "a.example.com",
                        "-CAfile", pt("ca-a.pem"), "-verify_return_error", "-quiet"],
                       input=b"name\n", capture_output=True, timeout=20)
    assert b"backend a" in r.stdout, r.stderr.decode()
    # gnutls-cli stops at the end of its input: keep it open until the reply is in
    r = subprocess.run("(echo name; sleep 1) | gnutls-cli --x509cafile %s -p %d "
                       "--sni-hostname dogs.pets.example.org "
                       "--verify-hostname dogs.pets.example.org 127.0.0.1"
                       % (pt("ca-b.pem"), port), shell=True, capture_output=True, timeout=20)
    assert b"backend b" in r.stdout, r.stdout.decode() + r.stderr.decode()
    # the wrong CA for the route must fail: the client really sees backend a's certificate
    r = subprocess.run(["openssl", "s_client", "-connect", "127.0.0.1:%d" % port,
                        "-servername", "a.example.com", "-CAfile", pt("ca-b.pem"),
                        "-verify_return_error", "-quiet"],
                       input=b"name\n", capture_output=True, timeout=20)
    assert b"backend a" not in r.stdout


def test_curl_through_passthrough(daemon_factory):
    """curl verifying an HTTPS backend (openssl s_server -WWW) through the listener."""
    port_be = free_port()
    srv = subprocess.Popen(["openssl", "s_server", "-accept", "127.0.0.1:%d" % port_be,
                            "-cert", pt("a.chain.pem"), "-key", pt("a.key"), "-WWW", "-quiet"],
                           cwd=fixture("passthrough"), stdout=subprocess.DEVNULL,
                           stderr=subprocess.DEVNULL)
    try:
        wait_port(port_be, proc=srv)
        cfg = {"listeners": [{"name": "pt", "bind": "127.0.0.1:%d" % free_port(),
                              "protocol": "tls-passthrough",
                              "routes": [{"sni": "a.example.com", "backend": "www"}]}],
               "backends": {"www": {"servers": ["127.0.0.1:%d" % port_be]}}}
        d = daemon_factory(cfg)
        port = d.ports[0]
        r = subprocess.run(["curl", "-sS", "--cacert", pt("ca-a.pem"), "--resolve",
                            "a.example.com:%d:127.0.0.1" % port,
                            "https://a.example.com:%d/a.pem" % port], capture_output=True,
                           timeout=20)
        with open(pt("a.pem"), "rb") as f:
            assert r.stdout == f.read(), r.stderr.decode()
    finally:
        srv.kill()
        srv.wait()


def bulk(port, sni, backend, up, down, seed):
    ctx = client_ctx(backend)
    with socket.create_connection(("127.0.0.1", port), timeout=60) as raw:
        with ctx.wrap_socket(raw, server_hostname=sni) as s:
            s.sendall(b"bulk %d %d %d\n" % (up, down, seed))
            sha, got = ssl_duplex(s, demo_backend.stream_blocks(up, seed + 1), down)
            assert got == down, "short download: %d of %d" % (got, down)
            digest = b""
            while len(digest) < 64:
                chunk = s.recv(64 - len(digest))
                assert chunk
                digest += chunk
    return sha, digest.decode()


def test_bulk_both_ways_is_byte_exact(backends, daemon_factory):
    from conftest import expected_sha256
    d = daemon_factory(pt_config(backends))
    n = 64 << 20
    got_down, got_up = bulk(d.ports[0], "a.example.com", "a", n, n, 7)
    assert got_down == expected_sha256(n, 7)
    assert got_up == expected_sha256(n, 8)


def client_hello(sni):
    """A real ClientHello from Python's ssl (on memory BIOs), and the objects to finish with."""
    ctx = client_ctx("a")
    inc, out = ssl.MemoryBIO(), ssl.MemoryBIO()
    obj = ctx.wrap_bio(inc, out, server_hostname=sni)
    with pytest.raises(ssl.SSLWantReadError):
        obj.do_handshake()
    return obj, inc, out, out.read()


def finish_handshake(sock, obj, inc, out):
    """Drives obj's handshake over sock, then asks the backend its name."""
    sock.settimeout(10)
    while True:
        try:
            obj.do_handshake()
            break
        except ssl.SSLWantReadError:
            pending = out.read()
            if pending:
                sock.sendall(pending)
            data = sock.recv(65536)
            assert data, "closed during the handshake"
            inc.write(data)
    sock.sendall(out.read())
    obj.write(b"name\n")
    sock.sendall(out.read())
    while True:
        try:
            return obj.read(100).decode()
        except ssl.SSLWantReadError:
            data = sock.recv(65536)
            assert data
            inc.write(data)


def test_client_hello_one_byte_per_segment(backends, daemon_factory):
    d = daemon_factory(pt_config(backends))
    obj, inc, out, hello = client_hello("a.example.com")
    with socket.create_connection(("127.0.0.1", d.ports[0])) as s:
        s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        for i in range(len(hello)):
            s.send(hello[i:i + 1])
            time.sleep(0.002)
        assert finish_handshake(s, obj, inc, out) == "backend a"


def test_client_hello_split_into_records(backends, daemon_factory):
    """The same ClientHello re-framed into 7-byte records reaches backend a unchanged: the
    backend's TLS stack accepts it, so the bytes were forwarded as they came."""
    d = daemon_factory(pt_config(backends))
    obj, inc, out, hello = client_hello("a.example.com")
    body, off = b"", 0
    while off < len(hello):
        ln = struct.unpack("!H", hello[off + 3:off + 5])[0]
        body += hello[off + 5:off + 5 + ln]
        off += 5 + ln
    framed = b"".join(b"\x16\x03\x01" + struct.pack("!H", len(body[i:i + 7])) + body[i:i + 7]
                      for i in range(0, len(body), 7))
    with socket.create_connection(("127.0.0.1", d.ports[0])) as s:
        s.sendall(framed)
        assert finish_handshake(s, obj, inc, out) == "backend a"


@pytest.mark.parametrize("data,reason", [
    (b"GET / HTTP/1.1\r\nHost: a.example.com\r\n\r\n", "not a TLS handshake record"),
    (bytes.fromhex("802e0103010015000000100000390000380000350000330000320000"
                   "2f000005000004"), "SSLv2-style ClientHello"),
    (b"\x16\x03\x01\x00\x00", "empty handshake record"),
    (b"\x16\x03\x01\x40\x00\x01\x00\x40\x00", "ClientHello larger than the size limit"),
])
def test_refused_input_is_closed_and_logged(backends, daemon_factory, data, reason):
    d = daemon_factory(pt_config(backends))
    with socket.create_connection(("127.0.0.1", d.ports[0])) as s:
        s.sendall(data)
        assert closed_by_peer(s)
    d.wait_log("listener=pt sni=- route=- backend=- server=- tier=- hs_ms=0 result=%s"
               % reason)


def test_oversized_hello_split_over_records_is_refused(backends, daemon_factory):
    """A ClientHello within 16 KiB whose many small records exceed the wire limit."""
    d = daemon_factory(pt_config(backends))
    msg = b"\x01\x00\x3f\x00" + b"\x03\x03" + bytes(16128)
    framed = b"".join(b"\x16\x03\x01" + struct.pack("!H", len(msg[i:i + 100])) + msg[i:i + 100]
                      for i in range(0, len(msg), 100))
    with socket.create_connection(("127.0.0.1", d.ports[0])) as s:
        with pytest.raises((ConnectionResetError, BrokenPipeError)):
            s.sendall(framed)
            assert closed_by_peer(s)
            raise ConnectionResetError  # closed cleanly: also fine
    d.wait_log("result=ClientHello records exceed the size limit")


def test_stalled_partial_hello_times_out(backends, daemon_factory):
    d = daemon_factory(pt_config(backends, timeouts={"handshake_ms": 300}))
    _, _, _, hello = client_hello("a.example.com")
    with socket.create_connection(("127.0.0.1", d.ports[0])) as s:
        s.sendall(hello[:len(hello) // 2])
        t0 = time.monotonic()
        assert closed_by_peer(s, timeout=10)
        assert time.monotonic() - t0 < 5
    # passthrough's whole handshake phase is the wait for the ClientHello
    d.wait_log("result=client hello timeout")


def test_no_default_backend_closes_unknown_names(backends, daemon_factory):
    d = daemon_factory(pt_config(backends, default=None))
    assert ask(d.ports[0], "a.example.com", "a") == "backend a"
    with socket.create_connection(("127.0.0.1", d.ports[0])) as raw:
        with pytest.raises((ssl.SSLError, ConnectionResetError, OSError)):
            client_ctx("c", False).wrap_socket(raw, server_hostname="nobody.example.com")
    d.wait_log("sni=nobody.example.com route=none backend=- server=- tier=- hs_ms=0 "
               "result=no route for this SNI and no default backend")


def test_proxy_v2_carries_the_sni_and_no_tls_details(daemon_factory):
    be = TlsBackend("a", proxy=True)
    cfg = {"listeners": [{"name": "pt", "bind": "127.0.0.1:%d" % free_port(),
                          "protocol": "tls-passthrough", "proxy_protocol": "v2",
                          "routes": [{"sni": "a.example.com", "backend": "a"}]}],
           "backends": {"a": {"servers": [be.addr]}}}
    d = daemon_factory(cfg)
    assert ask(d.ports[0], "a.example.com", "a") == "backend a"
    hdr = be.headers[0]
    assert hdr["version"] == 2 and hdr["dport"] == d.ports[0]
    assert hdr["tlvs"].get("0x2") == "a.example.com"  # PP2_TYPE_AUTHORITY
    assert "ssl" not in hdr  # ktlsd terminated nothing


def test_check_refuses_bad_routes(tmp_path):
    cfg = {"listeners": [{"bind": "127.0.0.1:1", "protocol": "tls-passthrough",
                          "routes": [{"sni": "*.com", "backend": "x"},
                                     {"sni": "a.example.com", "backend": "x"},
                                     {"sni": "A.example.com.", "backend": "x"},
                                     {"sni": "w*.example.com", "backend": "nope"}]}],
           "backends": {"x": {"servers": ["127.0.0.1:1"]}}}
    path = tmp_path / "ktlsd.json"
    path.write_text(json.dumps(cfg))
    r = subprocess.run([KTLSD, "--check", "-c", str(path)], capture_output=True, timeout=30)
    out = r.stdout.decode() + r.stderr.decode()
    assert r.returncode != 0
    assert ("%s: listeners[0].routes[0].sni: \"*.com\" a wildcard needs at least two labels"
            % path) in out
    assert "listeners[0].routes[2].sni: \"A.example.com.\" is already routed by routes[1]" in out
    assert "listeners[0].routes[3].sni: \"w*.example.com\" \"*\" is only allowed" in out
    assert "listeners[0].routes[3].backend: no backend named \"nope\"" in out

"""Hostile clients against the real daemon (docs/security.md). One daemon serves the whole module
with three tls listeners ("web", max_connections 5000; "small", max_connections 40; "good", for
the well-behaved client), handshake_ms 1500, idle_ms 3000, limits.max_handshakes 3000,
limits.per_source.max_handshakes 50 and limits.per_source.rate 100/s (burst 100).

During every attack a well-behaved client (python ssl, from its own source address 127.0.0.9)
makes a request to "good" every 50 ms, and every one of them must succeed within GOOD_BOUND_S; the
attackers come from other loopback addresses (or 127.0.0.1, the only one slowhttptest uses). The
good client's listener has a backend process of its own: the demo backend is Python, and 100
attackers streaming from it would hold its interpreter lock for seconds (CI saw a 2.0 s request),
which measures the backend, not ktlsd. The daemon, its worker and its global limits are shared. Each
test asserts that the attack was bounded by the configured limit or timeout that is meant to
bound it, visible in the metrics (ktlsd_limit_refusals_total, ktlsd_handshakes_total) and in the
sockets the attacker holds:

- slowloris (slowhttptest -H) and slow read (slowhttptest -X): connections stay under
  max_connections, memory stays bounded, the good client is served;
- 3000 half-open handshakes (a partial ClientHello, then silence) from 30 addresses: 50 per
  address are held and closed at handshake_ms, the rest refused at accept (source_handshakes);
- malformed and oversized ClientHellos and records (scapy's TLS layer and raw bytes): each is
  closed by the parser long before handshake_ms, and a handshake message announcing 16 MiB is cut
  off after a bounded number of bytes;
- renegotiation (refused: no_renegotiation) and downgrades (TLS 1.0 against a TLS 1.2+ policy:
  protocol_version alert; TLS_FALLBACK_SCSV: inappropriate_fallback);
- a connection flood beyond "small"'s max_connections: 40 held, the rest refused at accept and
  counted; the other listeners keep serving;
- a per-source rate flood: refused beyond the bucket and counted (source_rate);
- 100 clients that never read a 64 MiB response: the daemon's memory grows by at most the
  per-connection bound, and idle_ms closes them all.

Under valgrind (KTLSD_VALGRIND=1) the same attacks run a third as large with timeouts four times
longer, and the memory bounds are not compared (memcheck's shadow memory inflates RSS).
"""
import contextlib
import os
import re
import resource
import selectors
import shutil
import socket
import ssl
import subprocess
import threading
import time

import pytest

from conftest import Backend, Daemon, client_context, free_port, tls_config
from ctl_client import metric, scrape

GOOD_SRC = "127.0.0.9"
VALGRIND = os.environ.get("KTLSD_VALGRIND") == "1"
# Memory bounds hold for the plain build only: ASan's quarantine and valgrind's shadow memory are
# not ktlsd's (make check sets KTLSD_SANITIZED).
RSS_MEASURED = not VALGRIND and os.environ.get("KTLSD_SANITIZED") != "1"
# A request by the well-behaved client must complete within this (valgrind runs the daemon
# some 20 times slower).
GOOD_BOUND_S = 10.0 if VALGRIND else 2.0
# Under valgrind the timeouts stretch and the floods shrink; RSS (inflated by memcheck's shadow
# memory) is not compared then.
SLOW = 4 if VALGRIND else 1
HANDSHAKE_MS, IDLE_MS = 1500 * SLOW, 3000 * SLOW
FLOOD = 0.33 if VALGRIND else 1.0
PER_SOURCE_HS, SMALL_MAX, WEB_MAX = 50, 40, 5000
# ktlsd's buffers per connection (225 KiB, docs/security.md) plus the session state (OpenSSL's
# record buffers, about 34 KiB, for a suite ktlsd's record layer does not carry).
CONN_BOUND_KIB = 288


# Measured on the development machine (2 cores shared): under memcheck the daemon served these
# attacks with no memcheck error, but their timing bounds did not hold. The parser and the
# max_connections flood run under valgrind too (make test's valgrind stage).
timing_bound = pytest.mark.skipif(
    VALGRIND, reason="timing-bound attack: run natively (under valgrind the well-behaved bounds "
    "do not hold); memcheck covers the same input paths through test_bad_input.py")


@pytest.fixture(scope="module")
def env():
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (max(soft, min(hard, 20000)), hard))
    backend = Backend()
    timeouts = {"handshake_ms": HANDSHAKE_MS, "idle_ms": IDLE_MS, "connect_ms": 1000}
    cfg = tls_config([backend.addr], max_connections=WEB_MAX, timeouts=timeouts)
    cfg["listeners"].append({"name": "small", "bind": "127.0.0.1:%d" % free_port(),
                             "certificates": ["ec"], "backend": "app",
                             "max_connections": SMALL_MAX, "timeouts": timeouts})
    quiet = Backend()
    cfg["listeners"].append({"name": "good", "bind": "127.0.0.1:%d" % free_port(),
                             "certificates": ["ec"], "backend": "quiet", "timeouts": timeouts})
    cfg["backends"]["quiet"] = {"servers": [quiet.addr]}
    cfg["limits"] = {"max_handshakes": 3000,
                     "per_source": {"max_handshakes": PER_SOURCE_HS, "rate": 100, "burst": 100}}
    mport = free_port()
    cfg["metrics"] = {"bind": "127.0.0.1:%d" % mport}
    d = Daemon(cfg)
    d.mport = mport
    yield d
    rc = d.stop()
    backend.stop()
    quiet.stop()
    assert rc == 0, "ktlsd exited with %s; log:\n%s" % (rc, d.log()[-3000:])


def connect_from(src, port, timeout=5, sndbuf=None):
    s = socket.socket()
    s.settimeout(timeout)
    if sndbuf:  # keep the kernel's own buffering out of what a test counts as "taken"
        s.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, sndbuf)
    s.bind((src, 0))
    s.connect(("127.0.0.1", port))
    return s


def good_request(port):
    """One GET over TLS from GOOD_SRC: returns the seconds it took, raises on any failure."""
    t0 = time.monotonic()
    with connect_from(GOOD_SRC, port, timeout=GOOD_BOUND_S) as raw:
        with client_context().wrap_socket(raw, server_hostname="localhost") as s:
            s.sendall(b"GET /bytes/4096?seed=1 HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
            data = b""
            while chunk := s.recv(65536):
                data += chunk
    assert data.startswith(b"HTTP/1.1 200") and len(data.partition(b"\r\n\r\n")[2]) == 4096
    return time.monotonic() - t0


@contextlib.contextmanager
def good_client(d):
    """Requests to "good" every 50 ms while the block runs; all must succeed within the bound."""
    stop, times, errors = threading.Event(), [], []

    def loop():
        while not stop.is_set():
            try:
                times.append(good_request(d.ports[2]))
            except Exception as e:  # noqa: BLE001 - every failure is reported below
                errors.append(repr(e))
            stop.wait(0.05)

    t = threading.Thread(target=loop, daemon=True)
    t.start()
    try:
        yield times
    finally:
        stop.set()
        t.join(30)
    assert not errors, "well-behaved requests failed during the attack: %s" % errors[:5]
    assert times, "no well-behaved request ran"
    assert max(times) < GOOD_BOUND_S, "slowest well-behaved request took %.2f s" % max(times)


def samples(d):
    return scrape(d.mport)


def refusals(d, listener, limit):
    return metric(samples(d), "ktlsd_limit_refusals_total", listener=listener, limit=limit)


def active(d, listener):
    s = samples(d)
    return sum(v for (name, labels), v in s.items()
               if name == "ktlsd_connections_active" and ("listener", listener) in labels)


def wait_active(d, listener, at_most, timeout):
    deadline = time.monotonic() + timeout
    while active(d, listener) > at_most:
        assert time.monotonic() < deadline, "%s still has %d connections" % (
            listener, active(d, listener))
        time.sleep(0.1)


def client_hello(sni="localhost"):
    """The bytes of a real ClientHello (python ssl on memory BIOs)."""
    inc, out = ssl.MemoryBIO(), ssl.MemoryBIO()
    obj = client_context().wrap_bio(inc, out, server_hostname=sni)
    with contextlib.suppress(ssl.SSLWantReadError):
        obj.do_handshake()
    return out.read()


def time_to_eof(socks, timeout):
    """Waits until each socket reads EOF or a reset; returns {sock: seconds}."""
    sel = selectors.DefaultSelector()
    t0 = time.monotonic()
    done = {}
    for s in socks:
        s.setblocking(False)
        sel.register(s, selectors.EVENT_READ)
    while len(done) < len(socks) and time.monotonic() - t0 < timeout:
        for key, _ in sel.select(0.1):
            try:
                if key.fileobj.recv(65536):
                    continue
            except BlockingIOError:
                continue
            except OSError:
                pass
            done[key.fileobj] = time.monotonic() - t0
            sel.unregister(key.fileobj)
    sel.close()
    return done


def rss_kib(pid):
    with open("/proc/%d/status" % pid) as f:
        return int(re.search(r"VmRSS:\s+(\d+)", f.read()).group(1))


@timing_bound
@pytest.mark.skipif(not shutil.which("slowhttptest"), reason="slowhttptest is not installed")
@pytest.mark.parametrize("mode", ["-H", "-X"], ids=["slowloris", "slow-read"])
def test_slowhttptest(env, mode):
    url = "https://127.0.0.1:%d/%s" % (env.ports[0],
                                      "bytes/8000000" if mode == "-X" else "")
    args = ["slowhttptest", mode, "-c", str(int(300 * FLOOD)), "-r", "60", "-i", "1", "-l", "6", "-u", url,
            "-p", "3"]
    if mode == "-X":
        args += ["-k", "1", "-n", "1", "-w", "16", "-y", "64", "-z", "32"]
    rss0 = rss_kib(env.proc.pid)
    with good_client(env):
        r = subprocess.run(args, capture_output=True, text=True, timeout=60)
        peak = rss_kib(env.proc.pid)
        assert active(env, "web") <= WEB_MAX
    assert r.returncode == 0, r.stdout[-2000:] + r.stderr[-2000:]
    # slowhttptest held its connections (the attack ran)...
    out = re.sub(r"\x1b\[[0-9;]*[A-Za-z]", "", r.stdout)
    held = [int(n) for n in re.findall(r"connected:\s+(\d+)", out)]
    assert held and max(held) >= 100 * FLOOD, out[-2000:]
    # ...and they cost the daemon no more than the bound per connection.
    assert not RSS_MEASURED or peak - rss0 < max(held) * CONN_BOUND_KIB, (peak, rss0, max(held))
    wait_active(env, "web", 0, IDLE_MS / 1000 + 5)


@timing_bound
def test_half_open_handshakes_are_capped_per_source_and_time_out(env):
    partial = client_hello()[:60]
    hs0 = metric(samples(env), "ktlsd_handshakes_total", listener="web", result="timeout")
    ref0 = refusals(env, "web", "source_handshakes")
    sources = ["127.0.1.%d" % i for i in range(1, 1 + int(30 * FLOOD))]
    socks = []
    with good_client(env):
        t0 = time.monotonic()
        for src in sources:
            for _ in range(100):
                s = connect_from(src, env.ports[0])
                with contextlib.suppress(OSError):  # a refused one may be reset already
                    s.sendall(partial)
                socks.append(s)
        flood_s = time.monotonic() - t0
        assert flood_s < HANDSHAKE_MS / 1000, "the flood took %.1f s" % flood_s
        inprog = metric(samples(env), "ktlsd_handshakes_in_progress")
        assert inprog <= len(sources) * PER_SOURCE_HS + 5  # + the good client's
        eof = time_to_eof(socks, HANDSHAKE_MS / 1000 + 3)
    try:
        assert len(eof) == len(socks), "%d half-open connections outlived handshake_ms" % (
            len(socks) - len(eof))
        early = sum(1 for t in eof.values() if t < HANDSHAKE_MS / 1000 - 0.5)
        late = len(socks) - early
        # 50 per source waited for handshake_ms; every other one was refused at once.
        assert abs(late - len(sources) * PER_SOURCE_HS) <= 30, (early, late)
        assert refusals(env, "web", "source_handshakes") - ref0 >= early - 30
        timeouts = metric(samples(env), "ktlsd_handshakes_total", listener="web",
                          result="timeout") - hs0
        assert timeouts >= late - 30, (timeouts, late)
    finally:
        for s in socks:
            s.close()


def sslv2_hello():
    specs = bytes.fromhex("00002f000035c02b")[:6]
    body = (b"\x01\x03\x03" + len(specs).to_bytes(2, "big") + b"\x00\x00" +
            (16).to_bytes(2, "big") + specs + os.urandom(16))
    return (0x8000 | len(body)).to_bytes(2, "big") + body


def malformed_inputs():
    from scapy.compat import raw
    from scapy.layers.tls.extensions import ServerName, TLS_Ext_ServerName, TLS_Ext_Unknown
    from scapy.layers.tls.handshake import TLSClientHello
    from scapy.layers.tls.record import TLS

    def hello(**kw):
        return raw(TLS(version=0x0301, msg=[TLSClientHello(version=0x0303, **kw)]))

    sni = TLS_Ext_ServerName
    return {
        "not TLS": b"GET / HTTP/1.1\r\nHost: x\r\n\r\n",
        "random bytes": b"\x00" + os.urandom(500),
        "SSLv2 hello": sslv2_hello(),
        "record longer than 2^14+2048": b"\x16\x03\x01\xff\xff" + bytes(20000),
        "record version 0x0000": b"\x16\x00\x00\x00\x05" + bytes(5),
        "cipher list past the message": hello(ciphers=[0xc02b], cipherslen=5000),
        "SNI length past its extension": hello(ciphers=[0xc02b], ext=[sni(servernames=[
            ServerName(servername=b"localhost", namelen=300)])]),
        "4000-byte SNI": hello(ciphers=[0xc02b], ext=[sni(servernames=[
            ServerName(servername=b"a" * 4000)])]),
        "extension length past the hello": hello(ciphers=[0xc02b], ext=[
            TLS_Ext_Unknown(type=0x7777, len=60000, val=b"x" * 10)]),
        "3000 unknown extensions": hello(ciphers=[0xc02b], ext=[
            TLS_Ext_Unknown(type=0x6000 + i, val=b"") for i in range(3000)]),
        "no cipher suites": hello(ciphers=[]),
        "empty records": b"\x16\x03\x01\x00\x00" * 100,
        "warning alerts before the hello": b"\x15\x03\x01\x00\x02\x01\x70" * 50,
        "ChangeCipherSpec first": b"\x14\x03\x03\x00\x01\x01" + client_hello(),
        "application data first": b"\x17\x03\x03\x00\x10" + bytes(16),
    }


def test_malformed_and_oversized_client_hellos_are_refused_by_the_parser(env):
    cases = malformed_inputs()
    f0 = metric(samples(env), "ktlsd_handshakes_total", listener="web", result="failed")
    with good_client(env):
        for name, data in cases.items():
            s = connect_from("127.0.0.4", env.ports[0])
            t0 = time.monotonic()
            with contextlib.suppress(OSError):
                s.sendall(data)
            eof = time_to_eof([s], 3)
            s.close()
            assert eof, "%s: still open after 3 s" % name
            # closed by the parser, not by handshake_ms
            assert time.monotonic() - t0 < HANDSHAKE_MS / 1000 - 0.3, name
    failed = metric(samples(env), "ktlsd_handshakes_total", listener="web",
                    result="failed") - f0
    assert failed >= len(cases) - 3, failed  # a few end as "aborted" (the reset came first)


@timing_bound
def test_a_handshake_message_announcing_16_MiB_is_cut_off(env):
    """The ClientHello's handshake header claims 16 MiB; records of filler follow until the
    daemon closes: it must not accept more than OpenSSL's ClientHello limit (~128 KiB)."""
    with good_client(env):
        s = connect_from("127.0.0.4", env.ports[0], sndbuf=65536)
        first = b"\x16\x03\x01\x40\x00" + b"\x01\xff\xff\xff" + bytes(16380)
        record = b"\x16\x03\x01\x40\x00" + bytes(16384)
        sent = 0
        try:
            s.sendall(first)
            sent += len(first)
            while sent < 16 << 20:
                s.sendall(record)
                sent += len(record)
        except OSError:
            pass
        s.close()
    assert sent < 16 << 20, "the daemon never closed: it took %d bytes" % sent
    # The tight bound needs the plain build: an ASan daemon is slow enough that the kernel's
    # receive buffer, not ktlsd, holds megabytes before the close.
    assert not RSS_MEASURED or sent < 1 << 20, "the daemon took %d bytes of one ClientHello" % sent


def openssl(*args, stdin=b""):
    return subprocess.run(["openssl", "s_client", "-connect", *args], input=stdin,
                          capture_output=True, timeout=20)


@timing_bound
def test_renegotiation_and_downgrades_are_refused(env):
    hostport = "127.0.0.1:%d" % env.ports[0]
    with good_client(env):
        # Client-initiated renegotiation (TLS 1.2; "R" asks s_client to renegotiate).
        p = subprocess.Popen(["openssl", "s_client", "-connect", hostport, "-tls1_2",
                              "-servername", "localhost"], stdin=subprocess.PIPE,
                             stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
        time.sleep(0.5)
        p.stdin.write(b"R\n")
        p.stdin.flush()
        out = p.communicate(timeout=20)[0].decode(errors="replace")
        assert "RENEGOTIATING" in out and "no renegotiation" in out, out[-2000:]
        # TLS 1.0 against a TLS 1.2+ policy: the server says protocol_version.
        r = openssl(hostport, "-tls1", "-cipher", "DEFAULT@SECLEVEL=0")
        assert b"alert protocol version" in r.stdout + r.stderr, r.stderr[-2000:]
        # A TLS 1.2 fallback with TLS_FALLBACK_SCSV to a server that has TLS 1.3.
        r = openssl(hostport, "-tls1_2", "-fallback_scsv")
        assert b"alert inappropriate fallback" in r.stdout + r.stderr, r.stderr[-2000:]


def test_a_flood_beyond_max_connections_is_refused_at_accept(env):
    port = env.ports[1]
    ref0 = refusals(env, "small", "max_connections")
    socks = []
    with good_client(env):
        for i in range(200):
            socks.append(connect_from("127.0.0.%d" % (20 + i % 10), port))
        eof = time_to_eof(socks, 1.0 * SLOW)  # the refused ones are closed at once
        assert active(env, "small") <= SMALL_MAX
        refused = refusals(env, "small", "max_connections") - ref0
        assert abs(len(eof) - (200 - SMALL_MAX)) <= 5, len(eof)
        assert refused >= len(eof) - 5, (refused, len(eof))
        # The held ones end at handshake_ms; then "small" serves again.
        eof.update(time_to_eof([s for s in socks if s not in eof], HANDSHAKE_MS / 1000 + 2))
        assert len(eof) == len(socks)
    for s in socks:
        s.close()
    wait_active(env, "small", 0, 3)
    with connect_from(GOOD_SRC, port) as raw:
        with client_context().wrap_socket(raw, server_hostname="localhost") as s:
            assert s.version()


@timing_bound
def test_per_source_rate_is_enforced(env):
    ref0 = refusals(env, "web", "source_rate")
    with good_client(env):
        for _ in range(400):
            s = connect_from("127.0.0.5", env.ports[0])
            s.close()
        time.sleep(0.5)
    refused = refusals(env, "web", "source_rate") - ref0
    # burst 100 plus 100/s for the time the flood took at the daemon; everything else refused at
    # accept (a sanitized daemon accepts more slowly, so more tokens come back meanwhile)
    assert (150 if RSS_MEASURED else 50) <= refused <= 300, refused


@timing_bound
def test_clients_that_never_read_cost_bounded_memory_and_time_out(env):
    n = int(100 * FLOOD)
    rss0 = rss_kib(env.proc.pid)
    socks = []
    with good_client(env):
        for i in range(n):
            # A small receive window, as a slow-read attacker advertises (and so that the
            # attacker's own kernel buffers, on this same host, stay small).
            raw = socket.socket()
            raw.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 16384)
            raw.bind(("127.0.0.%d" % (40 + i % 20), 0))
            raw.connect(("127.0.0.1", env.ports[0]))
            s = client_context().wrap_socket(raw, server_hostname="localhost")
            s.sendall(b"GET /bytes/%d HTTP/1.1\r\nHost: x\r\n\r\n" % (64 << 20))
            socks.append(s)
        time.sleep(1.5)  # every connection's buffers fill up
        grown = rss_kib(env.proc.pid) - rss0
        assert active(env, "web") >= n
        print("never-read: RSS grew by %d KiB for %d connections" % (grown, n))
        assert not RSS_MEASURED or grown < n * CONN_BOUND_KIB, "RSS grew by %d KiB for %d connections" % (
            grown, n)
        # idle_ms closes them: nothing moves once the buffers are full
        wait_active(env, "web", 1, IDLE_MS / 1000 + 3)
    for s in socks:
        s.close()

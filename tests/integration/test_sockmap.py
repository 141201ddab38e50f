"""The sockmap tier (docs/datapath.md): tcp listeners forwarding inside the kernel through the BPF
sockhash, byte-exact both ways; the live state bpftool shows (conns, counters); ends, resets,
backend death and daemon restarts leaving no socket in the daemon and no entry in the maps."""
import contextlib
import fcntl
import hashlib
import json
import os
import random
import re
import shutil
import signal
import socket
import select
import struct
import subprocess
import termios
import threading
import time
import uuid

import pytest

from conftest import (KTLSD, PY, Daemon, TcpBackend, client_context, free_port, tls_config,
                      wait_port)
from ctl_client import metric, scrape

CTL = os.path.join(os.path.dirname(KTLSD), "ktlsctl")
MIB = 1 << 20


def sockmap_missing():
    """The reason this machine cannot run the tier, from the daemon's own startup probe."""
    pin = "/sys/fs/bpf/ktlsd-probe-%s" % uuid.uuid4().hex[:8]
    cfg = {"listeners": [{"name": "p", "bind": "127.0.0.1:1", "protocol": "tcp",
                          "backend": "b", "datapath": "sockmap"}],
           "backends": {"b": {"servers": ["127.0.0.1:1"]}}, "bpf": {"pin_path": pin}}
    path = "/tmp/ktlsd-sockmap-probe-%d.json" % os.getpid()
    with open(path, "w") as f:
        json.dump(cfg, f)
    try:
        r = subprocess.run([KTLSD, "--check", "-c", path], capture_output=True, timeout=30)
    finally:
        os.unlink(path)
    out = (r.stdout + r.stderr).decode()
    return None if r.returncode == 0 else out.strip()


_missing = sockmap_missing()
pytestmark = pytest.mark.skipif(_missing is not None, reason="sockmap tier unavailable: %s"
                                % _missing)


# ---- streams: deterministic, every MiB distinct, checked by SHA-256 ----

def stream(seed, n):
    base = random.Random(seed).randbytes(MIB)
    k = 0
    while n > 0:
        blk = struct.pack("<Q", k) + base[8:]
        if n < len(blk):
            blk = blk[:n]
        yield blk
        n -= len(blk)
        k += 1


def digest(seed, n):
    h = hashlib.sha256()
    for b in stream(seed, n):
        h.update(b)
    return h.hexdigest()


def send_stream(sock, seed, n, pace=0.0):
    for b in stream(seed, n):
        if pace:  # in small pieces with pauses: a transfer that lasts
            for i in range(0, len(b), 64 << 10):
                sock.sendall(b[i:i + (64 << 10)])
                time.sleep(pace)
        else:
            sock.sendall(b)


def recv_all(sock, h=None):
    """Reads to EOF: (sha256, byte count, error or None)."""
    h, n = h or hashlib.sha256(), 0
    try:
        while True:
            d = sock.recv(MIB)
            if not d:
                break
            h.update(d)
            n += len(d)
    except OSError as e:
        return h.hexdigest(), n, e
    return h.hexdigest(), n, None


class StreamBackend(TcpBackend):
    """Each connection starts with a 16-byte header (seed, bytes wanted back). The backend sends
    that many bytes of stream(seed + 1) while hashing what the client sends, then closes its
    side; results[seed] = (sha256 of what it got, byte count) once the client's FIN came."""

    def __init__(self, pace=0.0, behaviour=None):
        self.results = {}
        self.pace = pace
        self.behaviour = behaviour
        self.done = threading.Condition()
        super().__init__(self.serve)

    def serve(self, c):
        hdr = b""
        while len(hdr) < 16:
            d = c.recv(16 - len(hdr))
            if not d:
                c.close()
                return
            hdr += d
        seed, back = struct.unpack("<QQ", hdr)
        if self.behaviour:
            self.behaviour(c, seed, back)
            return
        def tx():
            with contextlib.suppress(OSError):
                send_stream(c, seed + 1, back, self.pace)
                c.shutdown(socket.SHUT_WR)
        t = threading.Thread(target=tx, daemon=True)
        t.start()
        h, n, err = recv_all(c, hashlib.sha256(hdr))
        t.join()
        c.close()
        with self.done:
            self.results[seed] = (h, n + 16, err)
            self.done.notify_all()

    def wait(self, seed, timeout=120):
        with self.done:
            self.done.wait_for(lambda: seed in self.results, timeout)
        return self.results.get(seed)


def exchange(port, seed, up, down, pace=0.0, result=None, ports=None):
    """One client: header + up bytes to the backend, down bytes back, both at once. Returns
    (what came back: sha, count, error); ports, if given, gets the client's local port."""
    s = socket.create_connection(("127.0.0.1", port), timeout=120)
    if ports is not None:
        ports[seed] = s.getsockname()[1]
    hdr = struct.pack("<QQ", seed, down)

    def tx():
        with contextlib.suppress(OSError):  # the daemon may end it first (drain)
            s.sendall(hdr)
            send_stream(s, seed, up, pace)
            s.shutdown(socket.SHUT_WR)
    t = threading.Thread(target=tx, daemon=True)
    t.start()
    got = recv_all(s)
    t.join()
    s.close()
    if result is not None:
        result[seed] = got
    return got


def upstream_digest(seed, up, down):
    h = hashlib.sha256()
    h.update(struct.pack("<QQ", seed, down))
    for b in stream(seed, up):
        h.update(b)
    return h.hexdigest()


# ---- the daemon and what the kernel shows ----

def tcp_config(servers, datapath="sockmap", **extra):
    cfg = {"listeners": [{"name": "plain", "bind": "127.0.0.1:%d" % free_port(),
                          "protocol": "tcp", "backend": "app", "datapath": datapath}],
           "backends": {"app": {"servers": list(servers)}},
           "drain_timeout_ms": 1000,
           "bpf": {"pin_path": "/sys/fs/bpf/ktlsd-test-%s" % uuid.uuid4().hex[:12]}}
    cfg["listeners"][0].update(extra)
    return cfg


def bpftool_dump(pin, name):
    out = subprocess.check_output(["bpftool", "-j", "map", "dump", "pinned",
                                   os.path.join(pin, name)], timeout=30)
    return [e.get("formatted", e) for e in json.loads(out)]


def live_conns(d):
    return {e["key"]: e["value"] for e in bpftool_dump(d.pin_path, "conns")}


def daemon_sockets(pid):
    """The daemon's TCP sockets other than its listeners, as ss shows them."""
    out = subprocess.check_output(["ss", "-tanpH"], timeout=30).decode()
    return [l for l in out.splitlines() if "pid=%d," % pid in l and not l.startswith("LISTEN")]


def assert_clean(d, timeout=10.0):
    """No connection left in the daemon, the sockhash, targets, peers or conns."""
    deadline = time.monotonic() + timeout
    while True:
        socks = daemon_sockets(d.proc.pid)
        maps = {m: bpftool_dump(d.pin_path, m) for m in ("conns", "peers", "sockhash", "targets")}
        if not socks and not any(maps.values()):
            return
        if time.monotonic() > deadline:
            raise AssertionError("left behind: sockets %s, maps %s\nlog:\n%s"
                                 % (socks, maps, d.log()[-3000:]))
        time.sleep(0.1)


def ctl_connections(d):
    out = subprocess.check_output([CTL, "-s", d.ctl_path, "-j", "connections"], timeout=30)
    return json.loads(out)


def ctl_bytes(d, listener="plain"):
    out = subprocess.check_output([CTL, "-s", d.ctl_path, "-j", "stats"], timeout=30)
    b = json.loads(out)["listeners"][listener]["bytes"]
    return b["client_to_backend"], b["backend_to_client"]


def counter_bytes(pin, listener, reason, direction):
    total = 0
    for e in bpftool_dump(pin, "counters"):
        k = e["key"]
        if (k["listener"], k["reason"], k["dir"]) == (listener, reason, direction):
            total += sum(v["value"]["bytes"] for v in e["values"])
    return total


# ---- tests ----

def test_256mib_each_way_one_connection(daemon_factory):
    be = StreamBackend()
    d = daemon_factory(tcp_config([be.addr]))
    n = 256 * MIB
    sha, count, err = exchange(d.ports[0], 7, n, n)
    assert err is None and count == n, (count, err)
    assert sha == digest(8, n), "backend → client stream differs"
    up = be.wait(7)
    assert up is not None and up[2] is None
    assert up[1] == n + 16 and up[0] == upstream_digest(7, n, n), "client → backend stream differs"
    d.wait_log("tier=sockmap")
    assert_clean(d)


def test_100_concurrent_connections_byte_exact(daemon_factory):
    be = StreamBackend()
    d = daemon_factory(tcp_config([be.addr]))
    n = 3 * MIB
    results, ports = {}, {}
    threads = [threading.Thread(target=exchange, args=(d.ports[0], 1000 + i, n + i, n - i),
                                kwargs={"result": results, "ports": ports}) for i in range(100)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(300)
    for i in range(100):
        seed = 1000 + i
        sha, count, err = results[seed]
        assert err is None and count == n - i and sha == digest(seed + 1, n - i), seed
        up = be.wait(seed)
        assert up[1] == n + i + 16 and up[0] == upstream_digest(seed, n + i, n - i), seed
    # Each client's own log line says sockmap.
    tiers = dict(re.findall(r"conn peer=127\.0\.0\.1:(\d+) .* tier=(\S+)", d.log()))
    assert sorted(tiers.get(str(p)) for p in ports.values()) == ["sockmap"] * 100
    assert_clean(d)
    # The byte counts (TCP's, not the verdict's skb lengths) are exact: header + n + i up, n - i
    # down for each client.
    assert ctl_bytes(d) == (sum(16 + n + i for i in range(100)), sum(n - i for i in range(100)))


def test_bpftool_shows_live_connections_and_counters(daemon_factory):
    be = StreamBackend(pace=0.01)
    d = daemon_factory(tcp_config([be.addr]))
    c2b0 = counter_bytes(d.pin_path, 0, 0, 0)
    results = {}
    threads = [threading.Thread(target=exchange, args=(d.ports[0], 50 + i, 8 * MIB, 8 * MIB),
                                kwargs={"pace": 0.01, "result": results}) for i in range(5)]
    for t in threads:
        t.start()
    deadline = time.monotonic() + 10
    while len(live_conns(d)) < 5 and time.monotonic() < deadline:
        time.sleep(0.05)
    first = live_conns(d)
    time.sleep(0.3)
    second = live_conns(d)
    assert len(first) == 5 and set(first) == set(second), (first, second)
    for key, v in second.items():
        assert v["tier"] == "KTLSD_TIER_SOCKMAP" and v["state"] == "KTLSD_STATE_FORWARDING"
        assert v["listener"] == 0 and v["backend_cookie"] != 0 and v["start_ns"] > 0
        assert v["bytes_c2b"] > first[key]["bytes_c2b"], "client → backend count not growing"
        assert v["bytes_b2c"] > first[key]["bytes_b2c"], "backend → client count not growing"
    # ktlsctl and the metrics see the same connections on the same tier.
    conns = ctl_connections(d)["connections"]
    assert len(conns) == 5 and all(c["tier"] == "sockmap" for c in conns), conns
    for t in threads:
        t.join(120)
    assert all(results[50 + i][1] == 8 * MIB for i in range(5))
    assert_clean(d)  # every entry gone with its connection
    # The per-CPU counters: 5 × (header + 8 MiB) client → backend, at least.
    assert counter_bytes(d.pin_path, 0, 0, 0) - c2b0 >= 5 * (8 * MIB + 16)
    assert counter_bytes(d.pin_path, 0, 0, 1) >= 5 * 8 * MIB


def test_a_userspace_tier_connection_is_listed_from_the_next_tick(daemon_factory):
    """A TLS connection on the userspace tier gets its conns entry from the worker's tick (within
    100 ms; a connection that ends sooner costs no bpf() call), with its TLS version, suite and
    byte counts, and loses it when it ends."""
    def echo(c):
        with contextlib.suppress(OSError):
            while True:
                b = c.recv(65536)
                if not b:
                    break
                c.sendall(b)
        c.close()
    be = TcpBackend(echo)
    d = daemon_factory(tls_config([be.addr]))
    raw = socket.create_connection(("127.0.0.1", d.ports[0]), timeout=10)
    s = client_context().wrap_socket(raw, server_hostname="localhost")
    s.sendall(b"x" * 1000)
    got = b""
    while len(got) < 1000:
        got += s.recv(65536)
    deadline = time.monotonic() + 5
    while not live_conns(d) and time.monotonic() < deadline:
        time.sleep(0.02)
    listed = time.monotonic()
    entries = live_conns(d)
    assert len(entries) == 1, entries
    (v,) = entries.values()
    assert v["tier"] == "KTLSD_TIER_USERSPACE" and v["state"] == "KTLSD_STATE_FORWARDING", v
    assert v["tls_version"] == 0x0304 and v["backend_cookie"] != 0, v
    assert v["cipher_suite"] == 0x1301 and s.cipher()[0] == "TLS_AES_128_GCM_SHA256", v
    assert v["cipher"] == "TLS_AES_128_GCM_SHA256", v
    while v["bytes_c2b"] < 1000 and time.monotonic() < deadline:
        time.sleep(0.05)
        (v,) = live_conns(d).values()
    assert v["bytes_c2b"] == 1000 and v["bytes_b2c"] == 1000, v
    s.close()
    while live_conns(d) and time.monotonic() < listed + 5:
        time.sleep(0.02)
    assert live_conns(d) == {}


def test_early_bytes_before_the_handover_arrive_in_order(daemon_factory):
    """The PROXY header ktlsd queued, bytes the client sent before the backend connected and
    bytes the backend sent before the client asked for anything are all in ktlsd's buffer or
    the sockets' queues when the sockets enter the map: they must come out first, in order,
    once."""
    ready = threading.Event()
    seen = {}

    def greet(c):
        c.sendall(b"backend-hello\n")
        ready.wait(10)
        got = b""
        while got.count(b"\r\n") < 1 or not got.endswith(b"ping"):
            d = c.recv(100)
            if not d:
                break
            got += d
        seen["got"] = got
        c.sendall(b"got:" + got.split(b"\r\n", 1)[1])
        c.shutdown(socket.SHUT_WR)
        with contextlib.suppress(OSError):
            while c.recv(100):
                pass
        c.close()
    be = TcpBackend(greet)
    d = daemon_factory(tcp_config([be.addr], proxy_protocol="v1"))
    s = socket.create_connection(("127.0.0.1", d.ports[0]), timeout=10)
    s.sendall(b"early:")
    time.sleep(0.3)  # the backend's greeting waits in the client-facing socket
    s.sendall(b"ping")
    ready.set()
    got = b""
    while True:
        chunk = s.recv(100)
        if not chunk:
            break
        got += chunk
    s.close()
    assert seen["got"].startswith(b"PROXY TCP4 127.0.0.1 127.0.0.1 "), seen
    assert got == b"backend-hello\ngot:early:ping", got
    assert_clean(d)


@pytest.mark.parametrize("who", ["client", "backend"])
def test_half_close_each_way(daemon_factory, who):
    """One side ends its direction; the other keeps sending and everything arrives, then the
    end travels too."""
    n = 8 * MIB

    def late(c, seed, back):
        # backend: when the client is the first to finish, keep sending after its FIN
        h, count, _ = recv_all(c)
        if who == "client":
            send_stream(c, seed + 1, back)
        c.shutdown(socket.SHUT_WR)
        c.close()
        late.got = count

    def early(c, seed, back):
        send_stream(c, seed + 1, back)
        c.shutdown(socket.SHUT_WR)  # the backend ends first, then keeps reading
        h, count, _ = recv_all(c)
        c.close()
        early.got = count
    be = StreamBackend(behaviour=late if who == "client" else early)
    d = daemon_factory(tcp_config([be.addr]))
    s = socket.create_connection(("127.0.0.1", d.ports[0]), timeout=60)
    s.sendall(struct.pack("<QQ", 3, n))
    if who == "client":
        s.shutdown(socket.SHUT_WR)
        sha, count, err = recv_all(s)
        assert err is None and count == n and sha == digest(4, n)
    else:
        sha, count, err = recv_all(s)  # backend's whole stream, then its FIN
        assert err is None and count == n and sha == digest(4, n)
        send_stream(s, 3, n)  # our direction is still open
        s.shutdown(socket.SHUT_WR)
        deadline = time.monotonic() + 30
        while not hasattr(early, "got") and time.monotonic() < deadline:
            time.sleep(0.05)
        assert early.got == n
    s.close()
    assert_clean(d)


def test_client_reset_resets_the_backend(daemon_factory):
    seen = {}

    def sink(c, seed, back):
        _, n, err = recv_all(c)
        seen["err"] = err
        c.close()
    be = StreamBackend(behaviour=sink)
    d = daemon_factory(tcp_config([be.addr]))
    s = socket.create_connection(("127.0.0.1", d.ports[0]), timeout=10)
    s.sendall(struct.pack("<QQ", 1, 0) + b"x" * 100000)
    time.sleep(0.3)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    s.close()  # RST
    deadline = time.monotonic() + 10
    while "err" not in seen and time.monotonic() < deadline:
        time.sleep(0.05)
    assert isinstance(seen.get("err"), ConnectionResetError), seen
    d.wait_log("closed: client reset")
    assert_clean(d)


def test_backend_reset_resets_the_client(daemon_factory):
    def rst(c, seed, back):
        c.sendall(b"y" * 1000)
        time.sleep(0.3)
        c.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        c.close()
    be = StreamBackend(behaviour=rst)
    d = daemon_factory(tcp_config([be.addr]))
    s = socket.create_connection(("127.0.0.1", d.ports[0]), timeout=10)
    s.sendall(struct.pack("<QQ", 1, 0))
    _, n, err = recv_all(s)
    s.close()
    assert isinstance(err, ConnectionResetError), (n, err)
    d.wait_log("closed: backend reset")
    assert_clean(d)


def test_backend_death_mid_transfer(daemon_factory, tmp_path):
    """A backend process killed (SIGKILL) while both directions run."""
    script = tmp_path / "be.py"
    script.write_text(
        "import socket, sys, threading\n"
        "def tx(c):\n"
        "    while True: c.sendall(b'z' * 65536)\n"
        "def rx(c):\n"
        "    threading.Thread(target=tx, args=(c,), daemon=True).start()\n"
        "    while c.recv(65536): pass\n"
        "s = socket.socket(); s.bind(('127.0.0.1', int(sys.argv[1]))); s.listen(8)\n"
        "while True:\n"
        "    c, _ = s.accept()\n"
        "    threading.Thread(target=rx, args=(c,), daemon=True).start()\n")
    port = free_port()
    be = subprocess.Popen([PY, str(script), str(port)], stderr=subprocess.DEVNULL)
    wait_port(port, proc=be)
    d = daemon_factory(tcp_config(["127.0.0.1:%d" % port]))
    s = socket.create_connection(("127.0.0.1", d.ports[0]), timeout=30)
    stop = threading.Event()

    def tx():
        with contextlib.suppress(OSError):
            while not stop.is_set():
                s.sendall(b"q" * 65536)
    t = threading.Thread(target=tx, daemon=True)
    t.start()
    got = 0
    while got < 4 * MIB:
        got += len(s.recv(MIB))
    be.kill()
    be.wait()
    _, n, err = recv_all(s)  # the end reaches the client: EOF or reset, never a hang
    stop.set()
    s.close()
    t.join(10)
    assert_clean(d)


def test_idle_timeout_on_the_sockmap_tier(daemon_factory):
    def quiet(c, seed, back):
        with contextlib.suppress(OSError):
            while c.recv(100):
                pass
        c.close()
    be = StreamBackend(behaviour=quiet)
    d = daemon_factory(tcp_config([be.addr], timeouts={"idle_ms": 1500}))
    s = socket.create_connection(("127.0.0.1", d.ports[0]), timeout=10)
    s.sendall(struct.pack("<QQ", 1, 0))
    for _ in range(8):  # traffic the daemon never sees keeps it alive ...
        time.sleep(0.4)
        s.sendall(b"tick")
    assert len(live_conns(d)) == 1
    t0 = time.monotonic()
    assert s.recv(10) == b""  # ... silence does not
    assert 1.0 < time.monotonic() - t0 < 5.0
    s.close()
    d.wait_log("closed: idle timeout")
    assert_clean(d)


def test_auto_picks_sockmap_for_tcp_and_refuses_it_for_tls(daemon_factory, tmp_path):
    be = StreamBackend()
    d = daemon_factory(tcp_config([be.addr], datapath="auto"))
    sha, count, err = exchange(d.ports[0], 9, MIB, MIB)
    assert count == MIB and sha == digest(10, MIB)
    d.wait_log("tier=sockmap")
    cfg = {"listeners": [{"name": "web", "bind": "127.0.0.1:1", "certificates": ["ec"],
                          "backend": "app", "datapath": "sockmap"}],
           "certificates": {"ec": {"cert": "/nonexistent.pem", "key": "/nonexistent.key"}},
           "backends": {"app": {"servers": ["127.0.0.1:1"]}}}
    path = tmp_path / "tls.json"
    path.write_text(json.dumps(cfg))
    r = subprocess.run([KTLSD, "--check", "-c", str(path)], capture_output=True, timeout=30)
    assert r.returncode != 0
    assert b'listeners[0].datapath: "sockmap" forwards plaintext' in r.stderr, r.stderr


def test_sigterm_with_live_connections_then_restart(daemon_factory):
    be = StreamBackend(pace=0.01)
    cfg = tcp_config([be.addr])
    d = daemon_factory(cfg)
    results = {}
    threads = [threading.Thread(target=exchange, args=(d.ports[0], 70 + i, 64 * MIB, 64 * MIB),
                                kwargs={"pace": 0.01, "result": results}) for i in range(3)]
    for t in threads:
        t.start()
    deadline = time.monotonic() + 10
    while len(live_conns(d)) < 3 and time.monotonic() < deadline:
        time.sleep(0.05)
    assert len(live_conns(d)) == 3
    pid = d.proc.pid
    assert d.stop() == 0  # drains for drain_timeout_ms, then closes what is left
    for t in threads:
        t.join(30)
    assert len(results) == 3  # every client saw its end: none hangs
    assert not daemon_sockets(pid)
    assert not os.path.exists(cfg["bpf"]["pin_path"]), "pins left after a clean exit"
    d2 = daemon_factory(cfg)
    sha, count, err = exchange(d2.ports[0], 80, MIB, MIB)
    assert count == MIB and sha == digest(81, MIB)
    assert_clean(d2)


def test_stale_pins_of_a_killed_daemon_are_replaced(daemon_factory):
    be = StreamBackend(pace=0.01)
    cfg = tcp_config([be.addr])
    d = Daemon(cfg)  # not the factory's: it dies by SIGKILL
    try:
        killed_daemon_then_restart(d, cfg, s_port=d.ports[0], daemon_factory=daemon_factory)
    finally:
        if d.proc.poll() is None:
            d.proc.kill()
            d.proc.wait()
        shutil.rmtree(cfg["bpf"]["pin_path"], ignore_errors=True)


def killed_daemon_then_restart(d, cfg, s_port, daemon_factory):
    s = socket.create_connection(("127.0.0.1", s_port), timeout=10)
    s.sendall(struct.pack("<QQ", 5, 64 * MIB))
    deadline = time.monotonic() + 10
    while len(live_conns(d)) < 1 and time.monotonic() < deadline:
        time.sleep(0.05)
    d.proc.send_signal(signal.SIGKILL)
    d.proc.wait()
    d.log_file.close()
    s.close()
    stale = live_conns(d)
    assert stale, "the killed daemon's entries should still be pinned"
    d2 = daemon_factory(cfg)
    d2.wait_log("replaced 7 stale pins")
    assert not set(stale) & set(live_conns(d2)), "an entry of the killed daemon is left"
    sha, count, err = exchange(d2.ports[0], 90, MIB, MIB)
    assert count == MIB and sha == digest(91, MIB)
    assert_clean(d2)
    # A second daemon on the same pin path while one runs is refused.
    other = dict(cfg, listeners=[dict(cfg["listeners"][0], bind="127.0.0.1:%d" % free_port())])
    path = d2.config_path + ".other.json"
    with open(path, "w") as f:
        json.dump(other, f)
    try:
        r = subprocess.run([KTLSD, "-f", "-c", path], capture_output=True, timeout=30)
    finally:
        os.unlink(path)
    assert r.returncode != 0
    assert ("bpf.pin_path: %s is in use by another running ktlsd" % cfg["bpf"]["pin_path"]
            ).encode() in r.stderr, r.stderr


def test_clients_that_stop_reading_are_reset_not_buffered(daemon_factory):
    """A sockhash redirect has no backpressure: without ktlsd's budget, whatever backends send
    to clients that stopped reading would pile up in kernel memory. 12 such connections of up
    to 96 MiB each pass the default 512 MiB budget; the largest are then reset until the rest
    fit in it."""
    def flood(c, seed, back):
        n = 0
        with contextlib.suppress(OSError):
            while n < 96 * MIB:
                c.sendall(b"f" * MIB)
                n += MIB
        c.close()
    be = StreamBackend(behaviour=flood)
    d = daemon_factory(tcp_config([be.addr]))
    socks = []
    for i in range(12):
        s = socket.create_connection(("127.0.0.1", d.ports[0]), timeout=30)
        s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 65536)
        s.sendall(struct.pack("<QQ", i, 0))  # and never read
        socks.append(s)
    d.wait_log("the client is not keeping up", timeout=30)
    d.wait_log("closed: sockmap backlog limit")
    for s in socks:
        s.close()
    assert_clean(d)


def wait_sent(s, timeout=10.0):
    """Until the peer (ktlsd's socket) has acknowledged every byte s sent."""
    deadline = time.monotonic() + timeout
    while True:
        left = struct.unpack("i", fcntl.ioctl(s, termios.TIOCOUTQ, b"\0" * 4))[0]
        if not left:
            return
        assert time.monotonic() < deadline, "%d bytes still unsent" % left
        time.sleep(0.01)


def test_backlog_budget_bounds_all_connections_together(daemon_factory):
    """limits.sockmap_backlog bounds what all connections together have waiting in the kernel,
    however it is spread: none of these connections reaches the old 64 MiB per-connection
    floor. With a budget of 64 MiB and backends that never read, four clients send 16.5, 42.5,
    18.5 and 22.5 MiB one after the other. Of each, ktlsd's socket towards the backend queues 1
    to 4 MiB (its send buffer grows to tcp_wmem's maximum), which TCP bounds and is not
    backlog; the rest, some 14, 40, 16 and 20 MiB, waits in the sockmap queues. The third takes
    the total past the budget: the largest (the second, 40 MiB) is reset, and only it,
    whichever worker holds it; the three left (some 50 MiB) fit and keep their connections.
    Counted in ktlsd_sockmap_backlog_resets_total and logged once."""
    budget = 64 * MIB
    release = threading.Event()

    def never_read(c, seed, back):
        release.wait(60)
        c.close()
    be = StreamBackend(behaviour=never_read)
    be.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)  # inherited at accept
    mport = free_port()
    cfg = tcp_config([be.addr], timeouts={"idle_ms": 60000})
    cfg.update(workers=2, limits={"sockmap_backlog": budget},
               metrics={"bind": "127.0.0.1:%d" % mport})
    d = daemon_factory(cfg)
    sizes = [33 * MIB // 2, 85 * MIB // 2, 37 * MIB // 2, 45 * MIB // 2]
    socks = []

    def gone(s, timeout):
        return bool(select.select([s], [], [], timeout)[0])  # its end (or a reset) came
    try:
        for i, n in enumerate(sizes):
            s = socket.create_connection(("127.0.0.1", d.ports[0]), timeout=30)
            s.sendall(struct.pack("<QQ", 200 + i, 0) + b"s" * n)
            wait_sent(s, 30)  # all of it in ktlsd's sockets or the sockmap queues
            socks.append(s)
            time.sleep(0.5)  # many backlog checks
            if i == 1:
                assert "is not keeping up" not in d.log()
                assert 40 * MIB < metric(scrape(mport), "ktlsd_sockmap_backlog_bytes") <= budget
            if i == 2:
                d.wait_log("the backend is not keeping up")
                assert gone(socks[1], 10)
        assert [gone(s, 0) for s in socks] == [False, True, False, False], d.log()[-3000:]
        with pytest.raises(OSError):  # the reset one: its end, then a reset at the next send
            socks[1].recv(10)
            socks[1].sendall(b"x" * 100000)
            time.sleep(0.2)
            socks[1].sendall(b"x")
        port = socks[1].getsockname()[1]
        lines = [l for l in d.log().splitlines() if "is not keeping up" in l]
        assert len(lines) == 1 and ("peer=127.0.0.1:%d " % port) in lines[0], lines
        m = scrape(mport)
        assert metric(m, "ktlsd_sockmap_backlog_resets_total", listener="plain") == 1
        # The three left still hold their bytes, and they fit.
        left = metric(m, "ktlsd_sockmap_backlog_bytes")
        assert 40 * MIB < left <= budget, left
        assert metric(m, "ktlsd_sockmap_backlog_budget_bytes") == budget
    finally:
        release.set()
        for s in socks:
            s.close()
    assert_clean(d)

"""Shared fixtures for the integration tests: the real ktlsd binary, real backends, real clients.

Environment: KTLSD_BUILD (the build directory, default ./build) and KTLSD_FIXTURES (certificates,
default $KTLSD_BUILD/fixtures, made by tests/fixtures/gen.sh). Run as root on Linux.
KTLSD_VALGRIND=1 runs every daemon under valgrind's memcheck: any error or definite leak fails the
test that started it, with valgrind's report (SCALE shrinks big transfers then).
"""
import contextlib
import hashlib
import json
import os
import shutil
import signal
import socket
import ssl
import subprocess
import sys
import tempfile
import threading
import time

import pytest

TOP = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
BUILD = os.environ.get("KTLSD_BUILD", os.path.join(TOP, "build"))
FIX = os.environ.get("KTLSD_FIXTURES", os.path.join(BUILD, "fixtures"))
KTLSD = os.path.join(BUILD, "ktlsd")
PY = "/usr/bin/python3"
VALGRIND = os.environ.get("KTLSD_VALGRIND") == "1"
# Tests scale their big transfers by this (valgrind runs the daemon some 20-50 times slower).
SCALE = 0.05 if VALGRIND else 1.0
VALGRIND_ARGS = ["valgrind", "--quiet", "--error-exitcode=99", "--leak-check=full",
                 "--errors-for-leak-kinds=definite", "--show-leak-kinds=definite",
                 "--num-callers=30",
                 "--suppressions=" + os.path.join(TOP, "tests", "valgrind.supp")]

sys.path.insert(0, os.path.join(TOP, "tools"))
import demo_backend  # noqa: E402  (the same stream generator the backend uses)


def fixture(name):
    return os.path.join(FIX, name)


_PORTS_GIVEN = set()


def free_port():
    """A port nothing listens on, never the same twice in this process: the kernel may hand the
    port it just released to the next bind(0), and two listeners of one config on one port
    would split its connections (CI saw a listener's clients reach another's certificates)."""
    while True:
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        if port not in _PORTS_GIVEN:
            _PORTS_GIVEN.add(port)
            return port


def wait_port(port, host="127.0.0.1", timeout=10.0, proc=None):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError("process exited with %s before listening" % proc.returncode)
        with contextlib.suppress(OSError):
            with socket.create_connection((host, port), timeout=0.5):
                return
        time.sleep(0.05)
    raise TimeoutError("nothing listening on %s:%d" % (host, port))


def ssl_duplex(s, blocks, down, timeout=120.0):
    """Sends every block of blocks and receives down bytes over the SSLSocket s at the same time,
    from this one thread. Returns (sha256 hex, count) of what came in; count < down means the
    peer ended early. An SSL object must not be used by two threads at once (OpenSSL's rule):
    a reader thread and a writer thread on one SSLSocket share its socket BIO, whose retry flags
    each side clears, so a read that hit EAGAIN can come back as a false EOF and a write as
    "EOF occurred in violation of protocol"."""
    import select
    s.setblocking(False)
    h, got, out = hashlib.sha256(), 0, memoryview(b"")
    pending = iter(blocks)
    sending = True
    deadline = time.monotonic() + timeout
    try:
        while got < down or sending:
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError("ssl_duplex: %d of %d bytes in after %.0f s" % (got, down,
                                                                                  timeout))
            if not s.pending():
                select.select([s] if got < down else [], [s] if sending else [], [], left)
            while got < down:
                try:
                    chunk = s.recv(min(1 << 20, down - got))
                except (ssl.SSLWantReadError, ssl.SSLWantWriteError):
                    break
                if not chunk:
                    return h.hexdigest(), got
                h.update(chunk)
                got += len(chunk)
            while sending:
                if not out:
                    block = next(pending, None)
                    if block is None:
                        sending = False
                        break
                    out = memoryview(block)
                try:
                    out = out[s.send(out):]
                except (ssl.SSLWantReadError, ssl.SSLWantWriteError):
                    break
        return h.hexdigest(), got
    finally:
        s.setblocking(True)


def expected_sha256(n, seed):
    h = hashlib.sha256()
    for b in demo_backend.stream_blocks(n, seed):
        h.update(b)
    return h.hexdigest()


class TcpBackend:
    """A raw TCP backend whose per-connection behaviour is a function."""

    def __init__(self, handle):
        self.sock = socket.socket()
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(64)
        self.addr = "127.0.0.1:%d" % self.sock.getsockname()[1]
        self.handle = handle
        threading.Thread(target=self.loop, daemon=True).start()

    def loop(self):
        while True:
            try:
                c, _ = self.sock.accept()
            except OSError:
                return
            threading.Thread(target=self.handle, args=(c,), daemon=True).start()


class Backend:
    """tools/demo_backend.py on a free port."""

    def __init__(self):
        self.port = free_port()
        self.proc = subprocess.Popen([PY, os.path.join(TOP, "tools", "demo_backend.py"),
                                      str(self.port)], stderr=subprocess.DEVNULL)
        wait_port(self.port, proc=self.proc)
        self.addr = "127.0.0.1:%d" % self.port

    def stop(self):
        self.proc.kill()
        self.proc.wait()


class Daemon:
    """A real ktlsd process with a config written from a dict; paths are relative to FIX."""

    def __init__(self, config, extra_args=(), wait=True):
        self.dir = tempfile.mkdtemp(prefix="ktlsd-it-")
        if "control" not in config:  # one control socket per daemon, never the system's
            config = dict(config, control={"socket": os.path.join(self.dir, "ctl.sock")})
        if "bpf" not in config:  # one BPF pin directory per daemon, never the system's
            config = dict(config, bpf={"pin_path": "/sys/fs/bpf/ktlsd-it-%d-%s" % (
                os.getpid(), os.path.basename(self.dir))})
        self.ctl_path = config["control"]["socket"]
        self.pin_path = config["bpf"]["pin_path"]
        self.config = config
        self.config_path = os.path.join(FIX, "it-%d-%d.json" % (os.getpid(), id(self)))
        with open(self.config_path, "w") as f:
            json.dump(config, f, indent=1)
        self.log_path = os.path.join(self.dir, "ktlsd.log")
        self.log_file = open(self.log_path, "wb")
        self.vg_log = os.path.join(self.dir, "valgrind.log")
        wrap = VALGRIND_ARGS + ["--log-file=" + self.vg_log] if VALGRIND else []
        self.proc = subprocess.Popen([*wrap, KTLSD, "-f", "-l", "debug", "-c", self.config_path,
                                      *extra_args], stderr=self.log_file)
        self.ports = [int(l["bind"].rsplit(":", 1)[1]) for l in config["listeners"]]
        if wait:
            self.wait_ready(timeout=60 if VALGRIND else 10)

    def wait_ready(self, timeout):
        """Until the daemon says it serves (its listeners bound, workers and control socket up).
        No probe connection: a test's connections are then the only ones the daemon sees."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError("ktlsd exited with %s before serving; log:\n%s"
                                   % (self.proc.returncode, self.log()[-3000:]))
            if " serving with " in self.log():
                return
            time.sleep(0.02)
        raise TimeoutError("ktlsd not serving after %.0f s; log:\n%s" % (timeout,
                                                                          self.log()[-3000:]))

    def log(self):
        with open(self.log_path, "rb") as f:
            return f.read().decode(errors="replace")

    def wait_log(self, text, timeout=10.0):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if text in self.log():
                return
            time.sleep(0.05)
        raise AssertionError("%r not in the log:\n%s" % (text, self.log()[-3000:]))

    def rss_kib(self):
        with open("/proc/%d/status" % self.proc.pid) as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1])
        return 0

    def valgrind_report(self):
        with contextlib.suppress(OSError):
            with open(self.vg_log) as f:
                return f.read()
        return ""

    def stop(self, timeout=20):
        if VALGRIND:
            timeout *= 6
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
                raise AssertionError("ktlsd did not exit within %ds of SIGTERM; log:\n%s"
                                     % (timeout, self.log()[-3000:]))
        self.log_file.close()
        with contextlib.suppress(OSError):
            os.unlink(self.config_path)
        shutil.rmtree(self.pin_path, ignore_errors=True)  # left behind only by a killed daemon
        return self.proc.returncode


def recv_all(s, timeout=5):
    """Everything s receives until the peer's FIN."""
    s.settimeout(timeout)
    data = b""
    while True:
        chunk = s.recv(65536)
        if not chunk:
            return data
        data += chunk


def tls_config(backend_servers, port=None, **listener):
    """A one-listener tls config on 127.0.0.1 with the EC test certificate."""
    l = {"name": "web", "bind": "127.0.0.1:%d" % (port or free_port()),
         "certificates": ["ec"], "backend": "app"}
    l.update(listener)
    return {"listeners": [l],
            "certificates": {"ec": {"cert": "server-ec.chain.pem", "key": "server-ec.key"}},
            "backends": {"app": {"servers": list(backend_servers)}},
            "drain_timeout_ms": 2000}


def client_context():
    ctx = ssl.create_default_context(cafile=fixture("ca.pem"))
    return ctx


def https_get(port, path="/", timeout=10, ctx=None):
    """One HTTP/1.1 request over TLS with Python's ssl; returns (status, body bytes)."""
    ctx = ctx or client_context()
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as raw:
        with ctx.wrap_socket(raw, server_hostname="localhost") as s:
            s.sendall(("GET %s HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n"
                       % path).encode())
            data = b""
            while True:
                chunk = s.recv(1 << 20)
                if not chunk:
                    break
                data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    return int(head.split()[1]), body


@pytest.fixture
def backend():
    b = Backend()
    yield b
    b.stop()


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    """A failed test's report ends with the log tail of every daemon it started: in CI that log
    is the only record of why the daemon did what it did."""
    outcome = yield
    rep = outcome.get_result()
    if rep.failed and call.when == "call":
        for d in getattr(item, "ktlsd_daemons", []):
            with contextlib.suppress(OSError):
                rep.sections.append(("ktlsd log (%s)" % d.log_path, d.log()[-6000:]))


@pytest.fixture
def daemon_factory(request):
    started = request.node.ktlsd_daemons = []

    def start(config, **kw):
        d = Daemon(config, **kw)
        started.append(d)
        return d

    yield start
    for d in started:
        rc = d.stop()
        assert rc == 0, "ktlsd exited with %s; log:\n%s\n%s" % (rc, d.log()[-3000:],
                                                               d.valgrind_report()[-6000:])


@pytest.fixture
def daemon(backend, daemon_factory):
    """ktlsd terminating TLS in front of the demo backend."""
    return daemon_factory(tls_config([backend.addr]))

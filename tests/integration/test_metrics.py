"""GET /metrics through the real daemon: scraped, parsed as Prometheus text format, and checked
against the traffic the test itself sent (handshakes, exact bytes each way, refusals)."""
import json
import re
import select
import socket
import ssl
import subprocess
import time
import urllib.error
import urllib.request

from conftest import client_context, fixture, free_port, tls_config
from ctl_client import ctl, ktlsctl, metric, scrape, tls_request, wait_ctl


def active(samples, listener):
    return sum(v for (name, labels), v in samples.items()
               if name == "ktlsd_connections_active" and ("listener", listener) in labels)


def settle(mport, *listeners):
    deadline = time.monotonic() + 10
    while True:
        s = scrape(mport)
        if all(active(s, l) == 0 for l in listeners):
            return s
        assert time.monotonic() < deadline, "connections did not close"
        time.sleep(0.05)


def metrics_daemon(backend, daemon_factory):
    mport, lport = free_port(), free_port()
    cfg = tls_config([backend.addr])
    cfg["workers"] = 2
    cfg["metrics"] = {"bind": "127.0.0.1:%d" % mport}
    cfg["listeners"].append({"name": "lim", "bind": "127.0.0.1:%d" % lport,
                             "certificates": ["ec"], "backend": "app", "max_connections": 1})
    d = daemon_factory(cfg)
    wait_ctl(d.ctl_path)
    return d, mport


def test_counters_agree_with_the_traffic_sent(backend, daemon_factory):
    d, mport = metrics_daemon(backend, daemon_factory)
    port = d.ports[0]
    before = settle(mport, "web", "lim")
    c2b = b2c = 0
    n = 12
    for i in range(n - 1):
        size = 1000 * i + 7
        req = (b"GET /bytes/%d?seed=%d HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
               % (size, i))
        data, _ = tls_request(port, req)
        assert len(data.partition(b"\r\n\r\n")[2]) == size
        c2b, b2c = c2b + len(req), b2c + len(data)
    body = b"x" * (300 << 10)
    req = (b"POST /sha256 HTTP/1.1\r\nHost: x\r\nConnection: close\r\n"
           b"Content-Length: %d\r\n\r\n" % len(body) + body)
    data, _ = tls_request(port, req)
    assert b" %d\n" % len(body) in data
    c2b, b2c = c2b + len(req), b2c + len(data)
    after = settle(mport, "web")

    def delta(name, **labels):
        return metric(after, name, **labels) - metric(before, name, **labels)

    assert delta("ktlsd_handshakes_total", listener="web", result="ok") == n
    assert delta("ktlsd_handshakes_total", listener="web", result="failed") == 0
    assert delta("ktlsd_connections_total", listener="web", tier="userspace") == n
    assert delta("ktlsd_bytes_total", listener="web", direction="client_to_backend") == c2b
    assert delta("ktlsd_bytes_total", listener="web", direction="backend_to_client") == b2c
    assert delta("ktlsd_handshake_seconds_count", listener="web") == n
    buckets = sorted((float(dict(l)["le"]), v) for (name, l), v in after.items()
                     if name == "ktlsd_handshake_seconds_bucket" and ("listener", "web") in l)
    assert [b for b, _ in buckets][-1] == float("inf") and len(buckets) == 14
    assert all(a[1] <= b[1] for a, b in zip(buckets, buckets[1:]))
    assert buckets[-1][1] == metric(after, "ktlsd_handshake_seconds_count", listener="web")
    assert metric(after, "ktlsd_handshake_seconds_sum", listener="web") >= 0
    assert active(after, "web") == 0

    # A client that does not speak TLS: a failed handshake, with OpenSSL's reason.
    with socket.create_connection(("127.0.0.1", port)) as s:
        s.sendall(b"GET / HTTP/1.0\r\n\r\n")
        s.settimeout(10)
        while s.recv(4096):
            pass
    failed = settle(mport, "web")
    assert metric(failed, "ktlsd_handshakes_total", listener="web", result="failed") == \
        metric(after, "ktlsd_handshakes_total", listener="web", result="failed") + 1
    reasons = {dict(l)["reason"]: v for (name, l), v in failed.items()
               if name == "ktlsd_handshake_failures_total" and ("listener", "web") in l}
    assert sum(reasons.values()) >= 1 and all(r and ":" not in r for r in reasons), reasons


def test_limits_gauges_certificates_and_reloads(backend, daemon_factory):
    d, mport = metrics_daemon(backend, daemon_factory)
    lport = d.ports[1]
    before = settle(mport, "web", "lim")
    raw = socket.create_connection(("127.0.0.1", lport))
    held = client_context().wrap_socket(raw, server_hostname="localhost")
    held.sendall(b"POST /sha256 HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\n")
    deadline = time.monotonic() + 10
    while metric(scrape(mport), "ktlsd_connections_active", listener="lim",
                 tier="userspace") != 1:
        assert time.monotonic() < deadline
        time.sleep(0.05)
    with socket.create_connection(("127.0.0.1", lport)) as extra:
        extra.settimeout(5)
        assert extra.recv(10) == b""  # closed at accept: max_connections is 1
    s = scrape(mport)
    assert metric(s, "ktlsd_limit_refusals_total", listener="lim", limit="max_connections") == \
        metric(before, "ktlsd_limit_refusals_total", listener="lim",
               limit="max_connections") + 1
    assert metric(s, "ktlsd_connections_active", listener="lim", tier="userspace") == 1
    held.sendall(b"hello")
    held.recv(1000)
    held.close()
    settle(mport, "lim")

    end = subprocess.run(["openssl", "x509", "-noout", "-enddate", "-in",
                          fixture("server-ec.pem")], capture_output=True, text=True).stdout
    assert metric(s, "ktlsd_certificate_not_after_seconds", certificate="ec") == \
        ssl.cert_time_to_seconds(end.strip().split("=", 1)[1])

    assert metric(s, "ktlsd_reloads_total", result="ok") == 0
    assert ctl(d.ctl_path, {"cmd": "reload"})["ok"]
    s = scrape(mport)
    assert metric(s, "ktlsd_reloads_total", result="ok") == 1
    assert metric(s, "ktlsd_reloads_total", result="failed") == 0
    assert metric(s, "ktlsd_build_info", version="0.1.0") == 1


def http(mport, method="GET", path="/metrics"):
    req = urllib.request.Request("http://127.0.0.1:%d%s" % (mport, path), method=method)
    try:
        with urllib.request.urlopen(req, timeout=10) as r:
            return r.status, r.read()
    except urllib.error.HTTPError as e:
        return e.code, e.read()


def test_http_errors_and_the_daemon_keeps_serving(backend, daemon_factory):
    d, mport = metrics_daemon(backend, daemon_factory)
    assert http(mport, path="/")[0] == 404
    assert http(mport, method="POST")[0] == 405
    status, body = http(mport, method="HEAD")
    assert status == 200 and body == b""
    with socket.create_connection(("127.0.0.1", mport), timeout=10) as s:
        s.sendall(b"garbage\r\n\r\n")
        assert s.recv(100).startswith(b"HTTP/1.0 400 ")
    with socket.create_connection(("127.0.0.1", mport), timeout=10) as s:
        s.sendall(b"GET /metrics HTTP/1.0\r\n" + b"X: " + b"y" * 20000)
        assert s.recv(100).startswith(b"HTTP/1.0 400 ")
    assert http(mport)[0] == 200
    assert tls_request(d.ports[0], b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")


def closed_within(s, timeout):
    """Seconds until the daemon closed s (EOF or reset), None if it did not within timeout; what
    arrives before the end is read and dropped."""
    t0 = time.monotonic()
    s.setblocking(False)
    while time.monotonic() - t0 < timeout:
        r, _, _ = select.select([s], [], [], 0.2)
        if not r:
            continue
        try:
            if not s.recv(65536):
                return time.monotonic() - t0
        except BlockingIOError:
            continue
        except OSError:
            return time.monotonic() - t0
    return None


def test_idle_metrics_clients_cannot_lock_out_the_control_socket(backend, daemon_factory):
    """Control and metrics clients have tables of their own (256 and 64): 300 metrics
    connections that never send a request fill the metrics table, the rest are refused at
    accept and logged at most once a second, and ktlsctl keeps answering throughout. Every one
    of them is closed once its request deadline (5 s from accept) passes, and scrapes work
    again while the 300 sockets are still open on the client's side."""
    d, mport = metrics_daemon(backend, daemon_factory)
    t0 = time.monotonic()
    # The listen backlog is 64: connecting them all takes a few SYN retries (seconds).
    idle = [socket.create_connection(("127.0.0.1", mport), timeout=10) for _ in range(300)]
    connecting = time.monotonic() - t0
    time.sleep(0.5)  # the control thread has accepted them all
    for _ in range(3):
        r = ktlsctl(d.ctl_path, "-j", "stats", timeout=20)
        assert r.returncode == 0 and json.loads(r.stdout)["ok"], (r.returncode, r.stderr)
    assert ctl(d.ctl_path, {"cmd": "version"}, timeout=10)["ok"]
    lines = re.findall(r"metrics: 64 clients already; refusing another \((\d+) more refused",
                       d.log())
    assert 1 <= len(lines) <= connecting + 2, (connecting, lines)  # not one per refusal (236)
    t1 = time.monotonic()
    for s in idle:  # the refused ones at once, the 64 held at their deadline
        assert closed_within(s, 10) is not None, "a metrics client that sent nothing is open"
    assert time.monotonic() - t1 < 7
    assert metric(scrape(mport), "ktlsd_build_info", version="0.1.0") == 1
    for s in idle:
        s.close()


def test_trickling_metrics_clients_are_closed_at_their_deadlines(backend, daemon_factory):
    """A byte a second keeps no metrics client alive: the request must be whole 5 s after
    accept, and once answered, the client has 2 s to go (each byte it sends used to reset the
    idle timer of 60 s)."""
    d, mport = metrics_daemon(backend, daemon_factory)
    req = b"GET /metrics HTTP/1.0\r\nX-Slow: " + b"y" * 40 + b"\r\n\r\n"
    s = socket.create_connection(("127.0.0.1", mport), timeout=10)
    t0, took = time.monotonic(), None
    for i in range(len(req)):  # 68 bytes, one a second: over a minute if nobody stops it
        if time.monotonic() - t0 > 10:
            break
        try:
            s.send(req[i:i + 1])
        except OSError:
            took = time.monotonic() - t0
            break
        if closed_within(s, 1.0) is not None:
            took = time.monotonic() - t0
            break
    s.close()
    assert took is not None and 4.0 < took < 8.0, took

    # Answered (the response, then ktlsd's FIN), then trickling instead of closing: ktlsd
    # closes its socket 2 s after the answer, and a send then meets a reset.
    s = socket.create_connection(("127.0.0.1", mport), timeout=10)
    s.sendall(b"GET /metrics HTTP/1.0\r\n\r\n")
    data = b""
    while chunk := s.recv(65536):
        data += chunk
    assert b"ktlsd_build_info" in data
    t0, took = time.monotonic(), None
    while time.monotonic() - t0 < 15:
        try:
            s.send(b"z")
        except OSError:
            took = time.monotonic() - t0
            break
        time.sleep(0.5)
    s.close()
    assert took is not None and 1.5 < took < 5.0, took
    # The control socket and the endpoint serve as before.
    assert ctl(d.ctl_path, {"cmd": "version"}, timeout=10)["ok"]
    assert metric(scrape(mport), "ktlsd_build_info", version="0.1.0") == 1

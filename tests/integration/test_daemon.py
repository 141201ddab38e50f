"""The daemon as operators see it: --check, tcp listeners, IPv6, workers, max_connections and
SIGTERM draining."""
import hashlib
import json
import os
import signal
import socket
import subprocess
import threading
import time

from conftest import (FIX, KTLSD, TOP, Backend, client_context, fixture, free_port, https_get,
                      tls_config, wait_port)


def check(config, tmp_path):
    path = tmp_path / "ktlsd.json"
    path.write_text(json.dumps(config) if isinstance(config, dict) else config)
    r = subprocess.run([KTLSD, "--check", "-c", str(path)], capture_output=True, timeout=30)
    return r.returncode, r.stdout.decode() + r.stderr.decode(), str(path)


def test_check_accepts_a_good_config(tmp_path):
    cfg = tls_config(["127.0.0.1:1"])
    cfg["certificates"]["ec"] = {"cert": fixture("server-ec.chain.pem"),
                                 "key": fixture("server-ec.key")}
    rc, out, path = check(cfg, tmp_path)
    assert rc == 0, out
    assert "%s: OK (1 listener)" % path in out


def test_check_reports_every_problem_with_path(tmp_path):
    rc, out, path = check('{"listeners": [{"bind": "127.0.0.1:1", "bakend": "x"}]}', tmp_path)
    assert rc != 0
    assert "%s: listeners[0].bakend: unknown field" % path in out
    rc, out, path = check('{"listeners": [\n  {"bind": \n', tmp_path)
    assert rc != 0 and "%s:3:" % path in out


def test_check_names_missing_and_bad_certificate_files(tmp_path):
    cfg = tls_config(["127.0.0.1:1"])
    cfg["certificates"]["ec"] = {"cert": str(tmp_path / "missing.pem"),
                                 "key": fixture("server-ec.key")}
    rc, out, _ = check(cfg, tmp_path)
    assert rc != 0 and str(tmp_path / "missing.pem") in out, out
    cfg["certificates"]["ec"] = {"cert": fixture("server-ec.chain.pem"),
                                 "key": fixture("server-rsa.key")}
    rc, out, _ = check(cfg, tmp_path)
    assert rc != 0 and "server-rsa.key" in out, out


def test_unknown_policy_and_unavailable_tier_refuse_to_start(tmp_path):
    cfg = tls_config(["127.0.0.1:1"], security_policy="ELBSecurityPolicy-Nope")
    cfg["certificates"]["ec"] = {"cert": fixture("server-ec.chain.pem"),
                                 "key": fixture("server-ec.key")}
    rc, out, _ = check(cfg, tmp_path)
    assert rc != 0 and 'listeners[0].security_policy: unknown security policy' in out
    cfg = tls_config(["127.0.0.1:1"], datapath="ktls-splice")
    cfg["certificates"]["ec"] = {"cert": fixture("server-ec.chain.pem"),
                                 "key": fixture("server-ec.key")}
    rc, out, _ = check(cfg, tmp_path)
    assert rc != 0 and 'listeners[0].datapath: "ktls-splice" is not available' in out, out


def test_weak_policy_is_logged_and_3des_reported(backend, daemon_factory):
    d = daemon_factory(tls_config([backend.addr],
                                  security_policy="ELBSecurityPolicy-TLS-1-0-2015-04"))
    d.wait_log("cipher DES-CBC3-SHA is not available in this OpenSSL build")
    d.wait_log("security policy ELBSecurityPolicy-TLS-1-0-2015-04 allows TLSv1 (weak")
    assert https_get(d.ports[0])[0] == 200


def test_tcp_listener_forwards_plain_bytes_both_ways(backend, daemon_factory):
    port = free_port()
    d = daemon_factory({"listeners": [{"name": "plain", "bind": "127.0.0.1:%d" % port,
                                       "protocol": "tcp", "backend": "app",
                                           "datapath": "userspace"}],
                        "backends": {"app": {"servers": [backend.addr]}}})
    body = os.urandom(8 << 20)
    with socket.create_connection(("127.0.0.1", port)) as s:
        s.sendall(b"POST /sha256 HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n"
                  b"Connection: close\r\n\r\n" % len(body) + body)
        reply = b""
        while chunk := s.recv(65536):
            reply += chunk
    assert reply.split(b"\r\n\r\n")[1].split() == [hashlib.sha256(body).hexdigest().encode(),
                                                   str(len(body)).encode()]
    d.wait_log("listener=plain sni=- cert=- proto=- cipher=- alpn=- client=\"-\" tier=userspace")


def test_ipv6_listener_and_backend(daemon_factory):
    b = Backend.__new__(Backend)
    b.port = free_port()
    b.proc = subprocess.Popen(["/usr/bin/python3", os.path.join(TOP, "tools", "demo_backend.py"),
                               "--bind", "::1", str(b.port)],
                              stderr=subprocess.DEVNULL)
    wait_port(b.port, host="::1", proc=b.proc)
    try:
        port = free_port()
        cfg = tls_config(["[::1]:%d" % b.port], port=port)
        cfg["listeners"][0]["bind"] = "[::1]:%d" % port
        d = daemon_factory(cfg, wait=False)
        wait_port(port, host="::1", proc=d.proc)
        with socket.create_connection(("::1", port)) as raw:
            with client_context().wrap_socket(raw, server_hostname="localhost") as s:
                s.sendall(b"GET /v6 HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
                data = b""
                while chunk := s.recv(65536):
                    data += chunk
        assert b"path=/v6 peer=::1:" in data
        d.wait_log("peer=[::1]:")
    finally:
        b.stop()


def test_workers_share_the_listener(backend, daemon_factory):
    cfg = tls_config([backend.addr])
    cfg["workers"] = 2
    d = daemon_factory(cfg)
    d.wait_log("serving with 2 workers")
    for i in range(20):
        assert https_get(d.ports[0], "/w%d" % i)[0] == 200


def test_max_connections_refuses_extra_clients(backend, daemon_factory):
    d = daemon_factory(tls_config([backend.addr], max_connections=2))
    held = []
    for _ in range(2):
        raw = socket.create_connection(("127.0.0.1", d.ports[0]))
        held.append(client_context().wrap_socket(raw, server_hostname="localhost"))
    extra = socket.create_connection(("127.0.0.1", d.ports[0]))
    extra.settimeout(5)
    assert extra.recv(10) == b""  # closed at accept
    extra.close()
    d.wait_log("listener web: max_connections reached")
    for s in held:
        s.close()
    deadline = time.monotonic() + 5
    while True:  # the slots free up once those connections are gone
        try:
            assert https_get(d.ports[0])[0] == 200
            break
        except (ConnectionError, OSError, ValueError, IndexError):
            if time.monotonic() > deadline:
                raise
            time.sleep(0.1)


def test_sigterm_drains_then_exits(backend, daemon_factory):
    # A drain deadline the transfer cannot reach: under valgrind 32 MiB take some 2.5 s (CI saw
    # 13 MB/s), past tls_config's 2 s; natively the drain ends with the transfer, in milliseconds.
    d = daemon_factory(dict(tls_config([backend.addr]), drain_timeout_ms=20000))
    raw = socket.create_connection(("127.0.0.1", d.ports[0]))
    s = client_context().wrap_socket(raw, server_hostname="localhost")
    s.sendall(b"GET /bytes/%d?seed=3 HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
              % (32 << 20))
    s.recv(1000)
    d.proc.send_signal(signal.SIGTERM)
    d.wait_log("draining")
    time.sleep(0.3)
    try:  # no new connections once draining
        socket.create_connection(("127.0.0.1", d.ports[0]), timeout=2).close()
        refused = False
    except ConnectionRefusedError:
        refused = True
    assert refused
    got = 0
    while chunk := s.recv(1 << 20):  # the transfer in progress finishes
        got += len(chunk)
    assert got >= (32 << 20) - 1000
    s.close()  # the last connection ends, so the drain does too, long before its deadline
    assert d.proc.wait(20) == 0
    d.wait_log("drained; exiting")
    assert "drain deadline" not in d.log(), d.log()[-2000:]


def test_features_not_built_are_refused_not_ignored(tmp_path):
    """A config asking for backend TLS on a tier that cannot carry it must not start and
    silently send plaintext."""
    for extra, needle in [({"backend_tls": {"enabled": True, "verify": False},
                            "datapath": "ktls-splice"},
                           "listeners[0].datapath: \"ktls-splice\" cannot carry backend_tls")]:
        cfg = tls_config(["127.0.0.1:1"], **extra)
        cfg["certificates"]["ec"] = {"cert": fixture("server-ec.chain.pem"),
                                     "key": fixture("server-ec.key")}
        rc, out, _ = check(cfg, tmp_path)
        assert rc != 0 and needle in out, out

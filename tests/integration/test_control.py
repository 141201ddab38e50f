"""The control socket and ktlsctl through the real daemon: every command, the socket's permissions
(mode, directory, SO_PEERCRED against another uid), and requests that are malformed, oversized or
unknown, none of which may disturb the daemon."""
import json
import os
import shutil
import socket
import ssl
import stat
import subprocess
import tempfile
import threading
import time

import pytest

from conftest import KTLSD, client_context, fixture, free_port, https_get, tls_config
from ctl_client import KTLSCTL, ctl, get, ktlsctl, pem_der, read_line, wait_ctl


def two_listener_config(backend, tmp_path, sockdir):
    """web: certificates rsa then ec (the first is the default); api: ec only. The control
    socket's directories do not exist yet (ktlsd makes them)."""
    cfg = tls_config([backend.addr])
    cfg["listeners"].append({"name": "api", "bind": "127.0.0.1:%d" % free_port(),
                             "certificates": ["ec"], "backend": "app"})
    cfg["listeners"][0]["certificates"] = ["rsa", "ec"]
    for name, base in (("rsa", "server-rsa"), ("ec", "server-ec")):
        shutil.copy(fixture(base + ".chain.pem"), tmp_path / (base + ".chain.pem"))
        shutil.copy(fixture(base + ".key"), tmp_path / (base + ".key"))
        cfg["certificates"][name] = {"cert": str(tmp_path / (base + ".chain.pem")),
                                     "key": str(tmp_path / (base + ".key"))}
    cfg["control"] = {"socket": os.path.join(sockdir, "run", "sub", "ctl.sock")}
    return cfg


@pytest.fixture
def two(backend, daemon_factory, tmp_path):
    sockdir = tempfile.mkdtemp(prefix="ktlsd-ctl-")  # outside pytest's 0700 tree
    d = daemon_factory(two_listener_config(backend, tmp_path, sockdir))
    d.sockdir = sockdir
    wait_ctl(d.ctl_path)
    yield d
    shutil.rmtree(sockdir, ignore_errors=True)


def served(port):
    """The leaf a handshake without SNI gets: the listener's default certificate."""
    ctx = client_context()
    ctx.check_hostname = False
    return get(port, ctx=ctx, sni=None)[2]


def hold(port):
    """An established TLS connection with a request half sent (the backend waits for the rest)."""
    raw = socket.create_connection(("127.0.0.1", port), timeout=10)
    s = client_context().wrap_socket(raw, server_hostname="localhost")
    s.sendall(b"POST /sha256 HTTP/1.1\r\nHost: x\r\nContent-Length: 10\r\n\r\nhello")
    return s


def finish(s):
    s.sendall(b"world")
    data = b""
    while b"\n" not in data.partition(b"\r\n\r\n")[2]:
        chunk = s.recv(4096)
        if not chunk:
            break
        data += chunk
    s.close()
    return data


def wait_for(fn, timeout=10):
    deadline = time.monotonic() + timeout
    while not fn():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.05)


def test_version_help_and_ktlsctl_usage(two):
    rep = ctl(two.ctl_path, {"cmd": "version"})
    assert rep["ok"] and rep["version"] == "0.1.0" and rep["pid"] == two.proc.pid
    assert rep["config"] == two.config_path and rep["openssl"].startswith("OpenSSL 3.")
    assert rep["datapath"]["userspace"] == "available"
    assert {c["cmd"] for c in ctl(two.ctl_path, {"cmd": "help"})["commands"]} >= {
        "version", "stats", "listeners", "connections", "certs", "reload", "cert-set",
        "cert-del", "drain"}
    r = ktlsctl(two.ctl_path, "version")
    assert r.returncode == 0 and r.stdout.startswith("ktlsd 0.1.0 (OpenSSL 3.")
    r = ktlsctl(two.ctl_path, "-j", "version")
    assert r.returncode == 0 and json.loads(r.stdout)["pid"] == two.proc.pid
    r = subprocess.run([KTLSCTL, "-h"], capture_output=True, text=True)
    assert r.returncode == 0
    for cmd in ("connections [listener=NAME] [sni=PATTERN] [tier=TIER] [limit=N]",
                "cert-set NAME CERT.pem [KEY.pem]", "cert-del NAME", "drain LISTENER",
                "certs [NAME]", "reload", "stats", "listeners", "version"):
        assert cmd in r.stdout
    assert ktlsctl(two.ctl_path, "frobnicate").returncode == 2
    assert ktlsctl(two.ctl_path, "drain").returncode == 2
    r = ktlsctl("/nonexistent/ctl.sock", "version")
    assert r.returncode == 1 and "No such file or directory" in r.stderr


def web_active(d):
    return ctl(d.ctl_path, {"cmd": "stats"})["listeners"]["web"]["connections"]["active"]


def test_stats_and_listeners(two):
    assert web_active(two) == 0
    base = ctl(two.ctl_path, {"cmd": "stats"})["listeners"]["web"]["connections"]["total"]
    for i in range(3):
        assert https_get(two.ports[0], "/s%d" % i)[0] == 200
    assert https_get(two.ports[1])[0] == 200
    wait_for(lambda: web_active(two) == 0)
    rep = ctl(two.ctl_path, {"cmd": "stats"})
    web = rep["listeners"]["web"]
    assert web["connections"]["total"] == base + 3 and web["handshakes"]["ok"] == 3
    assert web["connections"]["total_by_tier"]["userspace"] == 3
    assert web["bytes"]["client_to_backend"] > 0 and web["bytes"]["backend_to_client"] > 0
    assert rep["listeners"]["api"]["handshakes"]["ok"] == 1
    r = ktlsctl(two.ctl_path, "stats")
    assert r.returncode == 0 and r.stdout.split("\n")[0].split()[:4] == [
        "LISTENER", "ACTIVE", "TOTAL", "HS_OK"]

    rep = ctl(two.ctl_path, {"cmd": "listeners"})
    web, api = rep["listeners"]
    assert web["name"] == "web" and web["state"] == "serving"
    assert web["bind"] == "127.0.0.1:%d" % two.ports[0] and web["protocol"] == "tls"
    assert web["certificates"] == ["rsa", "ec"] and web["backend"] == "app"
    assert web["connections"] == {"active": 0, "total": base + 3}
    assert web["security_policy"] == "ELBSecurityPolicy-TLS13-1-2-2021-06"
    assert api["name"] == "api" and api["connections"]["total"] >= 1
    out = ktlsctl(two.ctl_path, "listeners").stdout
    assert "web" in out and "serving" in out and "rsa,ec" in out


def test_connections_with_filters_and_limit(two):
    held = [hold(two.ports[0]), hold(two.ports[0]), hold(two.ports[1])]
    try:
        sent = len(b"POST /sha256 HTTP/1.1\r\nHost: x\r\nContent-Length: 10\r\n\r\nhello")
        wait_for(lambda: [c["bytes_client_to_backend"] for c in
                          ctl(two.ctl_path, {"cmd": "connections"})["connections"]] == [sent] * 3)
        rep = ctl(two.ctl_path, {"cmd": "connections", "listener": "web"})
        assert rep["total"] == 2 and rep["shown"] == 2
        c = rep["connections"][0]
        assert c["listener"] == "web" and c["sni"] == "localhost"
        assert c["phase"] == "forwarding" and c["tier"] == "userspace"
        assert c["version"] == "TLSv1.3" and c["cipher"].startswith("TLS_")
        assert c["peer"].startswith("127.0.0.1:") and c["backend"] is not None
        assert c["bytes_backend_to_client"] == 0 and c["age_ms"] >= c["idle_ms"] >= 0
        rep = ctl(two.ctl_path, {"cmd": "connections", "limit": 1})
        assert rep["total"] == 3 and rep["shown"] == 1 and len(rep["connections"]) == 1
        assert ctl(two.ctl_path, {"cmd": "connections", "sni": "*.example.com"})["total"] == 0
        assert ctl(two.ctl_path, {"cmd": "connections", "sni": "LOCAL*"})["total"] == 3
        assert ctl(two.ctl_path, {"cmd": "connections", "tier": "none"})["total"] == 0
        assert ctl(two.ctl_path, {"cmd": "connections", "tier": "userspace",
                                  "listener": "api"})["total"] == 1
        assert ctl(two.ctl_path, {"cmd": "connections", "listener": "nope"})["total"] == 0
        assert "unknown tier" in ctl(two.ctl_path, {"cmd": "connections", "tier": "x"})["error"]
        assert "limit" in ctl(two.ctl_path, {"cmd": "connections", "limit": 0})["error"]
        r = ktlsctl(two.ctl_path, "connections", "listener=api")
        assert r.returncode == 0 and "1 of 1 connections shown" in r.stdout
        assert "TLSv1.3" in r.stdout
    finally:
        for s in held:
            finish(s)


def test_certs(two, tmp_path):
    rep = ctl(two.ctl_path, {"cmd": "certs"})
    ec, rsa = rep["certificates"]  # in the order of the config's "certificates"
    assert rsa["name"] == "rsa" and rsa["key_type"] == "RSA-2048"
    assert ec["name"] == "ec" and ec["key_type"] == "ECDSA-P256"
    assert rsa["in_use_by"] == ["web"] and ec["in_use_by"] == ["web", "api"]
    assert "localhost" in ec["names"] and ec["subject"] == "CN=localhost"
    assert ec["cert"] == str(tmp_path / "server-ec.chain.pem") and ec["deleted"] is False
    end = subprocess.run(["openssl", "x509", "-noout", "-enddate", "-in",
                          fixture("server-ec.pem")], capture_output=True, text=True).stdout
    assert ec["not_after_seconds"] == ssl.cert_time_to_seconds(end.strip().split("=", 1)[1])
    assert ec["not_after"].endswith("Z") and ec["expired"] is False and ec["days_left"] > 0
    assert ctl(two.ctl_path, {"cmd": "certs", "name": "ec"})["certificates"] == [ec]
    assert "no certificate" in ctl(two.ctl_path, {"cmd": "certs", "name": "x"})["error"]
    out = ktlsctl(two.ctl_path, "certs").stdout
    assert "ECDSA-P256" in out and "RSA-2048" in out and "web,api" in out


def test_cert_del_and_cert_set_change_what_handshakes_get(two, tmp_path):
    rsa_der, ec_der = pem_der(fixture("server-rsa.pem")), pem_der(fixture("server-ec.pem"))
    port = two.ports[0]
    assert served(port) == rsa_der
    r = ktlsctl(two.ctl_path, "cert-del", "rsa")
    assert r.returncode == 0 and r.stdout.startswith("cert-del: ok"), r.stderr
    assert served(port) == ec_der  # rsa left web: ec is its default now
    rsa = ctl(two.ctl_path, {"cmd": "certs", "name": "rsa"})["certificates"][0]
    assert rsa["deleted"] is True and rsa["in_use_by"] == []
    assert "already deleted" in ctl(two.ctl_path, {"cmd": "cert-del", "name": "rsa"})["error"]
    assert "no certificate" in ctl(two.ctl_path, {"cmd": "cert-del", "name": "x"})["error"]
    # The deletion outlives a reload; taking the last certificate of a listener is refused.
    assert ctl(two.ctl_path, {"cmd": "reload"})["ok"]
    assert served(port) == ec_der
    rep = ctl(two.ctl_path, {"cmd": "cert-del", "name": "ec"})
    assert "would have no certificate left" in rep["error"], rep
    assert served(two.ports[1]) == ec_der

    # cert-set brings rsa back, with new files (the EC certificate's).
    r = ktlsctl(two.ctl_path, "cert-set", "rsa", fixture("server-ec.chain.pem"),
                fixture("server-ec.key"))
    assert r.returncode == 0, r.stderr
    assert served(port) == ec_der
    with open(tmp_path / "server-rsa.key") as f:
        assert f.read() == open(fixture("server-ec.key")).read()
    assert stat.S_IMODE(os.stat(tmp_path / "server-rsa.key").st_mode) == \
        stat.S_IMODE(os.stat(fixture("server-rsa.key")).st_mode)
    # ... and with one PEM holding chain and key, back to the RSA pair.
    both = tmp_path / "both.pem"
    both.write_text(open(fixture("server-rsa.chain.pem")).read() +
                    open(fixture("server-rsa.key")).read())
    r = ktlsctl(two.ctl_path, "cert-set", "rsa", str(both))
    assert r.returncode == 0, r.stderr
    assert served(port) == rsa_der
    assert "PRIVATE KEY" not in open(tmp_path / "server-rsa.chain.pem").read()

    # Refused: not PEM, a key of another certificate, an unknown name; files stay as they were.
    before = open(tmp_path / "server-rsa.chain.pem").read()
    rep = ctl(two.ctl_path, {"cmd": "cert-set", "name": "rsa", "cert": "garbage",
                             "key": open(fixture("server-rsa.key")).read()})
    assert rep["error"].startswith("cert-set refused: cert-set rsa: the new certificate"), rep
    rep = ctl(two.ctl_path, {"cmd": "cert-set", "name": "rsa",
                             "cert": open(fixture("server-rsa.chain.pem")).read(),
                             "key": open(fixture("server-ec.key")).read()})
    assert "cert-set refused" in rep["error"] and "match" in rep["error"], rep
    rep = ctl(two.ctl_path, {"cmd": "cert-set", "name": "rsa", "cert": both.read_text(),
                             "key": open(fixture("server-rsa.key")).read()})
    assert "the certificate text holds a private key" in rep["error"], rep
    rep = ctl(two.ctl_path, {"cmd": "cert-set", "name": "x", "cert": "a", "key": "b"})
    assert "no certificate named \"x\"" in rep["error"]
    assert open(tmp_path / "server-rsa.chain.pem").read() == before
    assert not [n for n in os.listdir(tmp_path) if ".ktlsd-" in n]
    assert served(port) == rsa_der


def test_drain_stops_one_listener_and_lets_its_connections_finish(two):
    s = hold(two.ports[1])
    wait_for(lambda: ctl(two.ctl_path, {"cmd": "connections", "listener": "api"})["total"] == 1)
    r = ktlsctl(two.ctl_path, "drain", "api")
    assert r.returncode == 0 and "listener api: draining; 1 connection(s)" in r.stdout
    with pytest.raises(ConnectionRefusedError):
        socket.create_connection(("127.0.0.1", two.ports[1]), timeout=2)
    assert https_get(two.ports[0])[0] == 200
    assert b"200 OK" in finish(s)  # the connection that was open finishes normally
    api = ctl(two.ctl_path, {"cmd": "listeners"})["listeners"][1]
    assert api["name"] == "api" and api["state"] == "draining"
    assert "already draining" in ctl(two.ctl_path, {"cmd": "drain", "listener": "api"})["error"]
    assert "no listener" in ctl(two.ctl_path, {"cmd": "drain", "listener": "x"})["error"]
    # A reload opens it again: the config still has it.
    assert ctl(two.ctl_path, {"cmd": "reload"})["listeners"]["added"] == ["api"]
    assert https_get(two.ports[1])[0] == 200


def test_socket_mode_directory_and_other_uids_are_refused(two):
    path = two.ctl_path
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    assert stat.S_ISSOCK(os.stat(path).st_mode)
    assert stat.S_IMODE(os.stat(os.path.dirname(path)).st_mode) == 0o700
    client = ("import json, socket, sys\n"
              "s = socket.socket(socket.AF_UNIX)\n"
              "try:\n"
              "    s.connect(sys.argv[1])\n"
              "except OSError as e:\n"
              "    print('connect: %s' % e.strerror); sys.exit(3)\n"
              "s.sendall(b'{\"cmd\": \"version\"}\\n')\n"
              "print(s.makefile().readline().strip())\n")

    def as_nobody():
        return subprocess.run(["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups",
                               "/usr/bin/python3", "-c", client, path],
                              capture_output=True, text=True, timeout=30)

    r = as_nobody()  # the file mode keeps it out
    assert r.returncode == 3 and "Permission denied" in r.stdout, r.stdout + r.stderr
    # Loosened by hand, the SO_PEERCRED check still refuses, with a reason.
    for p in (two.sockdir, os.path.join(two.sockdir, "run"), os.path.dirname(path)):
        os.chmod(p, 0o755)
    os.chmod(path, 0o666)
    r = as_nobody()
    assert r.returncode == 0, r.stderr
    rep = json.loads(r.stdout)
    assert rep["error"] == "permission denied: uid 65534 may not control ktlsd (uid 0)"
    two.wait_log("control socket: refused pid")
    assert ctl(path, {"cmd": "version"})["ok"]
    assert https_get(two.ports[0])[0] == 200


def test_stale_socket_is_replaced_and_a_live_one_refused(backend, daemon_factory, tmp_path):
    path = str(tmp_path / "ctl.sock")
    stale = socket.socket(socket.AF_UNIX)
    stale.bind(path)
    stale.close()  # a socket file nobody listens on
    cfg = tls_config([backend.addr])
    cfg["control"] = {"socket": path}
    d = daemon_factory(cfg)
    wait_ctl(path)
    assert ctl(path, {"cmd": "version"})["pid"] == d.proc.pid
    cfg2 = tls_config([backend.addr])
    cfg2["control"] = {"socket": path}
    cfg2["certificates"]["ec"] = {"cert": fixture("server-ec.chain.pem"),
                                  "key": fixture("server-ec.key")}
    with open(tmp_path / "second.json", "w") as f:
        json.dump(cfg2, f)
    r = subprocess.run([KTLSD, "-f", "-c", str(tmp_path / "second.json")],
                       capture_output=True, text=True, timeout=30)
    assert r.returncode != 0
    assert "control socket %s is in use by a running process" % path in r.stderr
    assert ctl(path, {"cmd": "version"})["pid"] == d.proc.pid


def exchange(path, data, timeout=10):
    """Raw bytes in, every reply line until the daemon closes or goes quiet."""
    with socket.socket(socket.AF_UNIX) as s:
        s.settimeout(timeout)
        s.connect(path)
        s.sendall(data)
        s.shutdown(socket.SHUT_WR)
        out = b""
        while chunk := s.recv(1 << 16):
            out += chunk
    return [json.loads(l) for l in out.splitlines()]


def test_malformed_oversized_and_unknown_requests_get_errors(two):
    p = two.ctl_path
    cases = {
        b"not json\n": "malformed request",
        b"[1, 2]\n": "malformed request",
        b'{"cmd": 5}\n': "malformed request",
        b'{"cmd": "stats", "cmd": "stats"}\n': "malformed request",
        b'"\xff\xfe"\n': "malformed request",
        b'{"cmd": "frobnicate"}\n': 'unknown command "frobnicate"',
        b'{"cmd": "stats", "verbose": true}\n': 'stats: unknown field "verbose"',
        b'{"cmd": "drain"}\n': 'drain: "listener" is required',
        b'{"cmd": "drain", "listener": 7}\n': 'drain: "listener" must be a string',
        b'{"cmd": "connections", "limit": "ten"}\n': "limit must be an integer",
        b'{"cmd": "cert-set", "name": "ec"}\n': 'cert-set: "cert" is required',
    }
    for req, err in cases.items():
        [rep] = exchange(p, req)
        assert err in rep["error"], (req, rep)
    # Several on one connection, answered in order; blank lines ignored.
    reps = exchange(p, b'{"cmd":"version"}\n\n{"cmd":"nope"}\r\n{"cmd":"listeners"}')
    assert [("ok" in r, "error" in r) for r in reps] == [(True, False), (False, True),
                                                         (True, False)]
    # Over 64 KiB: an error, the rest of that line is skipped, the next request is answered.
    big = b'{"cmd":"' + b"a" * 100000 + b'"}'
    reps = exchange(p, big)
    assert len(reps) == 1 and "request longer than 65536 bytes" in reps[0]["error"]
    reps = exchange(p, big + b"\n" + big + b'\n{"cmd":"version"}\n')
    assert ["request longer" in r.get("error", "") for r in reps] == [True, True, False]
    assert reps[2]["ok"]
    # Through ktlsctl: an error reply is exit status 1, with the message on stderr.
    r = ktlsctl(p, "raw", '{"cmd": "frobnicate"}')
    assert r.returncode == 1 and 'unknown command "frobnicate"' in r.stderr
    r = ktlsctl(p, "-j", "raw", '{"cmd": "frobnicate"}')
    assert r.returncode == 1 and json.loads(r.stdout)["error"].startswith("unknown command")
    # None of it disturbed the daemon.
    assert two.proc.poll() is None
    assert https_get(two.ports[0])[0] == 200
    assert ctl(p, {"cmd": "version"})["ok"]


def test_many_concurrent_and_slow_clients(two):
    p = two.ctl_path
    silent = socket.socket(socket.AF_UNIX)  # connects and never says anything
    silent.connect(p)
    partial = socket.socket(socket.AF_UNIX)  # half a line, then nothing
    partial.connect(p)
    partial.sendall(b'{"cmd": "sta')
    unread = socket.socket(socket.AF_UNIX)  # asks a lot and never reads the replies
    unread.connect(p)
    unread.setblocking(False)
    try:
        unread.sendall(b'{"cmd":"help"}\n' * 20000)
    except BlockingIOError:
        pass
    errors = []

    def client(i):
        try:
            for _ in range(5):
                assert ctl(p, {"cmd": "stats"}, timeout=20)["ok"]
        except Exception as e:  # noqa: BLE001
            errors.append((i, repr(e)))

    threads = [threading.Thread(target=client, args=(i,)) for i in range(40)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert errors == []
    assert https_get(two.ports[0])[0] == 200
    partial.sendall(b'ts"}\n')
    assert json.loads(read_line(partial))["ok"]
    for s in (silent, partial, unread):
        s.close()
    assert ctl(p, {"cmd": "version"})["ok"]

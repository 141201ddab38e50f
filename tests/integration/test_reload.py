"""Hot reload through the real daemon: ten reloads (ktlsctl and SIGHUP), a cert-set and a listener
added then removed, all under traffic, without one failed request; a broken config refused with
its reason while the old one keeps serving."""
import hashlib
import json
import shutil
import signal
import socket
import threading
import time

from conftest import client_context, expected_sha256, fixture, free_port, https_get, tls_config
from ctl_client import ctl, get, ktlsctl, pem_der, wait_ctl

LONG = 48 << 20
LONG_SEED = 11


def write_config(d, cfg):
    with open(d.config_path, "w") as f:
        json.dump(cfg, f, indent=1)


def own_cert_files(cfg, tmp_path):
    """Copies of the EC test certificate that cert-set may overwrite."""
    for src in ("server-ec.chain.pem", "server-ec.key"):
        shutil.copy(fixture(src), tmp_path / src)
    cfg["certificates"]["ec"] = {"cert": str(tmp_path / "server-ec.chain.pem"),
                                 "key": str(tmp_path / "server-ec.key")}


class ShortLoop(threading.Thread):
    """Short HTTPS requests, one after the other, until stopped; records every failure and the
    certificate each handshake presented, with the time the connection started."""

    def __init__(self, port):
        super().__init__(daemon=True)
        self.port, self.stop, self.ok = port, threading.Event(), 0
        self.failures, self.served = [], []

    def run(self):
        i = 0
        while not self.stop.is_set():
            t0 = time.monotonic()
            try:
                status, body, der = get(self.port, "/loop%d" % i)
                if status != 200 or b"path=/loop%d " % i not in body:
                    self.failures.append((i, status, body[:100]))
                else:
                    self.ok += 1
                    self.served.append((t0, der))
            except Exception as e:  # noqa: BLE001  every failure counts
                self.failures.append((i, repr(e)))
            i += 1


class LongTransfer(threading.Thread):
    """One download read slowly until released, then at full speed; keeps a digest."""

    def __init__(self, port):
        super().__init__(daemon=True)
        self.port, self.release = port, threading.Event()
        self.digest, self.got, self.error = None, 0, None
        self.started = threading.Event()

    def run(self):
        try:
            with socket.create_connection(("127.0.0.1", self.port), timeout=60) as raw:
                with client_context().wrap_socket(raw, server_hostname="localhost") as s:
                    s.sendall(b"GET /bytes/%d?seed=%d HTTP/1.1\r\nHost: x\r\n"
                              b"Connection: close\r\n\r\n" % (LONG, LONG_SEED))
                    data = b""
                    while b"\r\n\r\n" not in data:
                        data += s.recv(4096)
                    head, _, body = data.partition(b"\r\n\r\n")
                    h = hashlib.sha256(body)
                    self.got = len(body)
                    self.started.set()
                    while True:
                        if not self.release.is_set():
                            time.sleep(0.02)
                        chunk = s.recv(65536 if not self.release.is_set() else 1 << 20)
                        if not chunk:
                            break
                        h.update(chunk)
                        self.got += len(chunk)
                    self.digest = h.hexdigest()
        except Exception as e:  # noqa: BLE001
            self.error = repr(e)
        finally:
            self.started.set()


def test_reloads_cert_set_and_listener_changes_under_traffic_lose_nothing(
        backend, daemon_factory, tmp_path):
    port, api_port = free_port(), free_port()
    cfg = tls_config([backend.addr], port=port)
    cfg["workers"] = 2
    own_cert_files(cfg, tmp_path)
    d = daemon_factory(cfg)
    wait_ctl(d.ctl_path)
    ec_der, rsa_der = pem_der(fixture("server-ec.pem")), pem_der(fixture("server-rsa.pem"))

    long = LongTransfer(port)
    long.start()
    assert long.started.wait(20) and long.error is None, long.error
    loops = [ShortLoop(port) for _ in range(3)]
    for loop in loops:
        loop.start()
    time.sleep(0.3)

    # Ten reloads of an unchanged config: five through ktlsctl, five through SIGHUP.
    for i in range(10):
        if i % 2 == 0:
            r = ktlsctl(d.ctl_path, "reload")
            assert r.returncode == 0, r.stderr
            assert "reload: ok; listeners kept: web" in r.stdout
        else:
            d.proc.send_signal(signal.SIGHUP)
        time.sleep(0.15)
    deadline = time.monotonic() + 10
    while d.log().count("reload: done") < 10 and time.monotonic() < deadline:
        time.sleep(0.05)
    assert d.log().count("reload: done") == 10

    # cert-set: the next handshakes present the new certificate.
    r = ktlsctl(d.ctl_path, "cert-set", "ec", fixture("server-rsa.chain.pem"),
                fixture("server-rsa.key"))
    assert r.returncode == 0, r.stderr
    swapped = time.monotonic()
    assert get(port, "/after-cert-set")[2] == rsa_der
    with open(tmp_path / "server-ec.chain.pem") as f:
        assert "BEGIN CERTIFICATE" in f.read()
    assert ctl(d.ctl_path, {"cmd": "certs", "name": "ec"})["certificates"][0]["key_type"] \
        == "RSA-2048"

    # A listener added, used, then removed.
    cfg2 = json.loads(json.dumps(d.config))
    cfg2["listeners"].append({"name": "api", "bind": "127.0.0.1:%d" % api_port,
                              "certificates": ["ec"], "backend": "app"})
    write_config(d, cfg2)
    rep = ctl(d.ctl_path, {"cmd": "reload"})
    assert rep.get("ok") and rep["listeners"] == {"kept": ["web"], "added": ["api"],
                                                   "removed": []}, rep
    assert get(api_port, "/api")[0] == 200
    write_config(d, d.config)
    rep = ctl(d.ctl_path, {"cmd": "reload"})
    assert rep.get("ok") and rep["listeners"]["removed"] == ["api"], rep
    try:
        socket.create_connection(("127.0.0.1", api_port), timeout=2).close()
        refused = False
    except ConnectionRefusedError:
        refused = True
    assert refused, "a removed listener still accepts"
    time.sleep(0.3)

    long.release.set()
    for loop in loops:
        loop.stop.set()
        loop.join(30)
    long.join(120)
    assert [f for loop in loops for f in loop.failures] == []
    assert sum(loop.ok for loop in loops) >= 30
    print("short requests: %d; long transfer: %d bytes"
          % (sum(loop.ok for loop in loops), long.got))
    assert long.error is None, long.error
    assert long.got == LONG and long.digest == expected_sha256(LONG, LONG_SEED)
    # Handshakes that started after cert-set returned got the new certificate, earlier ones the
    # old or the new one, never anything else.
    served = [x for loop in loops for x in loop.served]
    assert all(der == rsa_der for t0, der in served if t0 > swapped)
    assert all(der in (ec_der, rsa_der) for _, der in served)
    stats = ctl(d.ctl_path, {"cmd": "stats"})
    assert stats["reloads"] == {"ok": 13, "failed": 0}
    assert "refused" not in d.log(), d.log()[-2000:]


def test_broken_config_is_refused_with_its_reason_and_the_old_one_serves(
        backend, daemon_factory, tmp_path):
    d = daemon_factory(tls_config([backend.addr]))
    wait_ctl(d.ctl_path)
    good = d.config

    # An unknown field, through ktlsctl: the reason names the file and JSON path.
    bad = json.loads(json.dumps(good))
    bad["listeners"][0]["bakend"] = "app"
    write_config(d, bad)
    r = ktlsctl(d.ctl_path, "reload")
    assert r.returncode == 1
    assert "reload refused: %s: listeners[0].bakend: unknown field" % d.config_path in r.stderr
    assert https_get(d.ports[0])[0] == 200

    # A missing certificate file, through the protocol: every problem is listed.
    bad = json.loads(json.dumps(good))
    bad["certificates"]["ec"]["cert"] = str(tmp_path / "missing.pem")
    write_config(d, bad)
    rep = ctl(d.ctl_path, {"cmd": "reload"})
    assert rep["error"].startswith("reload refused: ")
    assert any(str(tmp_path / "missing.pem") in p for p in rep["problems"]), rep

    # Not JSON at all, through SIGHUP: logged with line and column.
    with open(d.config_path, "w") as f:
        f.write('{"listeners": [\n')
    d.proc.send_signal(signal.SIGHUP)
    d.wait_log("reload refused")
    d.wait_log("%s:2:" % d.config_path)

    # A new listener whose address is taken: refused before any worker changed.
    with socket.socket() as blocker:
        blocker.bind(("127.0.0.1", 0))
        blocker.listen()
        taken = blocker.getsockname()[1]
        bad = json.loads(json.dumps(good))
        bad["listeners"].append({"name": "taken", "bind": "127.0.0.1:%d" % taken,
                                 "certificates": ["ec"], "backend": "app"})
        write_config(d, bad)
        rep = ctl(d.ctl_path, {"cmd": "reload"})
        assert "listener taken: cannot listen on 127.0.0.1:%d" % taken in rep["error"], rep
    assert [l["name"] for l in ctl(d.ctl_path, {"cmd": "listeners"})["listeners"]] == ["web"]

    # Still the old config, serving; four refusals counted; a good reload works again.
    for i in range(5):
        assert https_get(d.ports[0], "/still%d" % i)[0] == 200
    assert ctl(d.ctl_path, {"cmd": "stats"})["reloads"] == {"ok": 0, "failed": 4}
    write_config(d, good)
    assert ctl(d.ctl_path, {"cmd": "reload"}).get("ok")
    assert https_get(d.ports[0])[0] == 200


def test_a_listener_renamed_keeps_its_socket_and_a_moved_one_rebinds(backend, daemon_factory):
    d = daemon_factory(tls_config([backend.addr]))
    wait_ctl(d.ctl_path)
    cfg = json.loads(json.dumps(d.config))
    cfg["listeners"][0]["name"] = "www"  # same address: the socket stays
    write_config(d, cfg)
    rep = ctl(d.ctl_path, {"cmd": "reload"})
    assert rep["listeners"] == {"kept": ["www"], "added": [], "removed": []}, rep
    assert https_get(d.ports[0])[0] == 200
    d.wait_log("listener=www ")
    new_port = free_port()
    cfg["listeners"][0]["bind"] = "127.0.0.1:%d" % new_port  # same name, new address
    write_config(d, cfg)
    rep = ctl(d.ctl_path, {"cmd": "reload"})
    assert rep["listeners"] == {"kept": [], "added": ["www"], "removed": ["www"]}, rep
    assert https_get(new_port)[0] == 200
    try:
        socket.create_connection(("127.0.0.1", d.ports[0]), timeout=2).close()
        refused = False
    except ConnectionRefusedError:
        refused = True
    assert refused

"""Session resumption (listeners[].session_resumption, session_tickets): off by default (a
resumption attempt gets a full handshake), stateless tickets when on, for TLS 1.2 and 1.3, with
openssl s_client and Python's ssl; shared across two ktlsd processes through a key file; keys
rotated by the file (reload) and on a schedule (generated keys)."""
import base64
import os
import re
import signal
import socket
import ssl
import subprocess
import time

import pytest

from conftest import KTLSD, client_context, fixture, free_port, tls_config
from ctl_client import metric, scrape

REQUEST = b"GET / HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n"
VERSIONS = ["-tls1_2", "-tls1_3"]


def s_client(port, *args, timeout=15):
    r = subprocess.run(["openssl", "s_client", "-connect", "127.0.0.1:%d" % port,
                        "-servername", "localhost", "-CAfile", fixture("ca.pem"), "-ign_eof",
                        *args], input=REQUEST, capture_output=True, timeout=timeout)
    out = r.stdout.decode(errors="replace") + r.stderr.decode(errors="replace")
    assert r.returncode == 0, out
    assert "HTTP/1.1 200" in out, out[-2000:]
    return out


def handshake(out):
    """"New" or "Reused", from s_client's "New, TLSv1.3, Cipher is ..." line."""
    m = re.search(r"^(New|Reused), (TLSv1\.[23])", out, re.M)
    assert m, out
    return m.group(1)


def ticket_name(sess):
    """The first 16 bytes of the ticket in an s_client -sess_out file: OpenSSL's ticket format
    starts with the name of the key that sealed it."""
    text = subprocess.run(["openssl", "sess_id", "-in", str(sess), "-noout", "-text"],
                          capture_output=True, check=True).stdout.decode()
    dump = text.split("TLS session ticket:", 1)[1]
    hexbytes = []
    for line in dump.splitlines()[1:]:
        m = re.match(r"\s*[0-9a-f]{4} - ((?:[0-9a-f]{2}[ -]){1,16})", line)
        if not m:
            break
        hexbytes += re.findall(r"[0-9a-f]{2}", m.group(1))
    assert len(hexbytes) >= 16, text
    return "".join(hexbytes[:16])


def new_ticket(port, version, sess):
    out = s_client(port, version, "-sess_out", str(sess))
    assert handshake(out) == "New", out
    return ticket_name(sess)


def resume(port, version, sess, sess_out=None):
    args = ["-sess_in", str(sess)] + (["-sess_out", str(sess_out)] if sess_out else [])
    return handshake(s_client(port, version, *args))


def resume_renewed(port, version, sess, tmp_path, name):
    """Resumes with sess and checks the server renewed the ticket under the key called name.
    TLS 1.3 sends new tickets after every handshake: the one saved must carry the new name. A
    TLS 1.2 server sends a NewSessionTicket in an abbreviated handshake only to renew, and
    s_client does not save the renewed ticket, so there the message itself is the proof."""
    if version == "-tls1_3":
        out = tmp_path / "renewed.pem"
        assert resume(port, version, sess, out) == "Reused"
        assert ticket_name(out) == name
    else:
        out = s_client(port, version, "-msg", "-sess_in", str(sess))
        assert handshake(out) == "Reused"
        assert "NewSessionTicket" in out, out


def resume_not_renewed_tls12(port, sess):
    out = s_client(port, "-tls1_2", "-msg", "-sess_in", str(sess))
    assert handshake(out) == "Reused"
    assert "NewSessionTicket" not in out, out


def key_file(path, *keys):
    path.write_text("# ktlsd ticket keys, oldest first\n" +
                    "".join(base64.b64encode(k).decode() + "\n" for k in keys))
    os.chmod(path, 0o600)
    return str(path)


def config(backend, **tickets):
    cfg = tls_config([backend.addr], session_resumption=True)
    if tickets:
        cfg["listeners"][0]["session_tickets"] = tickets
    cfg["metrics"] = {"bind": "127.0.0.1:%d" % free_port()}
    return cfg


def reload(d):
    n = d.log().count("reload: done")
    d.proc.send_signal(signal.SIGHUP)
    deadline = time.monotonic() + 10
    while d.log().count("reload: done") == n:
        assert time.monotonic() < deadline, d.log()[-2000:]
        time.sleep(0.05)


def py_connect(port, ctx, session=None):
    """One request with Python's ssl; returns (session, session_reused)."""
    with socket.create_connection(("127.0.0.1", port), timeout=10) as raw:
        with ctx.wrap_socket(raw, server_hostname="localhost", session=session) as s:
            s.sendall(REQUEST)
            data = b""
            while chunk := s.recv(65536):
                data += chunk
            assert data.startswith(b"HTTP/1.1 200"), data[:200]
            return s.session, s.session_reused


def py_ctx(version):
    ctx = client_context()
    ctx.maximum_version = ctx.minimum_version = (ssl.TLSVersion.TLSv1_2 if version == "-tls1_2"
                                                 else ssl.TLSVersion.TLSv1_3)
    return ctx


@pytest.mark.parametrize("version", VERSIONS)
def test_off_by_default_python_gets_a_full_handshake(version, backend, daemon_factory):
    d = daemon_factory(tls_config([backend.addr]))
    ctx = py_ctx(version)
    sess, reused = py_connect(d.ports[0], ctx)
    assert not reused
    _, reused = py_connect(d.ports[0], ctx, sess)
    assert not reused
    assert "resumed=yes" not in d.log()


@pytest.mark.parametrize("version", VERSIONS)
def test_off_refuses_a_ticket_that_would_resume(version, backend, daemon_factory, tmp_path):
    """A valid ticket, presented after a reload turned resumption off on the same listener (the
    generated keys that sealed it are still there): a full handshake, and no new ticket."""
    import json
    d = daemon_factory(config(backend))
    port = d.ports[0]
    new_ticket(port, version, tmp_path / "s.pem")
    assert resume(port, version, tmp_path / "s.pem") == "Reused"  # the ticket is good
    cfg = json.loads(open(d.config_path).read())
    cfg["listeners"][0]["session_resumption"] = False
    with open(d.config_path, "w") as f:
        json.dump(cfg, f)
    reload(d)
    out = s_client(port, version, "-msg", "-sess_in", str(tmp_path / "s.pem"))
    assert handshake(out) == "New", out
    assert "NewSessionTicket" not in out, out
    assert d.log().count("resumed=yes") == 1


@pytest.mark.parametrize("version", VERSIONS)
def test_on_resumes_with_s_client_and_python(version, backend, daemon_factory, tmp_path):
    d = daemon_factory(config(backend))
    new_ticket(d.ports[0], version, tmp_path / "s.pem")
    assert resume(d.ports[0], version, tmp_path / "s.pem") == "Reused"
    ctx = py_ctx(version)
    sess, reused = py_connect(d.ports[0], ctx)
    assert not reused and sess.has_ticket
    _, reused = py_connect(d.ports[0], ctx, sess)
    assert reused
    d.wait_log("resumed=yes result=ok")
    mport = int(d.config["metrics"]["bind"].rsplit(":", 1)[1])
    s = scrape(mport)
    assert metric(s, "ktlsd_handshakes_resumed_total", listener="web") == 2
    assert metric(s, "ktlsd_handshakes_total", listener="web", result="ok") == 4


@pytest.mark.parametrize("version", VERSIONS)
def test_two_processes_sharing_a_key_file_resume_each_other(version, backend, daemon_factory,
                                                             tmp_path):
    keys = key_file(tmp_path / "tickets.key", os.urandom(80), os.urandom(80))
    a = daemon_factory(config(backend, key_file=keys))
    b = daemon_factory(config(backend, key_file=keys))
    new_ticket(a.ports[0], version, tmp_path / "s.pem")
    assert resume(b.ports[0], version, tmp_path / "s.pem") == "Reused"
    b.wait_log("resumed=yes result=ok")
    # a ticket resumes only on the listener (name) that issued it: the same file under another
    # listener name derives other keys
    other = config(backend, key_file=keys)
    other["listeners"][0]["name"] = "other"
    c = daemon_factory(other)
    assert resume(c.ports[0], version, tmp_path / "s.pem") == "New"


@pytest.mark.parametrize("version", VERSIONS)
def test_key_file_rotation_by_reload(version, backend, daemon_factory, tmp_path):
    """[K1, K2]: K1 encrypts. Append K3: K2 encrypts, a K1 ticket still resumes and is renewed
    under K2. Drop K1: its tickets get a full handshake."""
    k1, k2, k3 = os.urandom(80), os.urandom(80), os.urandom(80)
    path = tmp_path / "tickets.key"
    d = daemon_factory(config(backend, key_file=key_file(path, k1, k2)))
    name1 = new_ticket(d.ports[0], version, tmp_path / "t1.pem")
    key_file(path, k1, k2, k3)
    reload(d)
    name2 = new_ticket(d.ports[0], version, tmp_path / "t2.pem")
    assert name2 != name1
    resume_renewed(d.ports[0], version, tmp_path / "t1.pem", tmp_path, name2)
    if version == "-tls1_2":  # a ticket of the encrypting key is not renewed
        resume_not_renewed_tls12(d.ports[0], tmp_path / "t2.pem")
    key_file(path, k2, k3)
    reload(d)
    assert resume(d.ports[0], version, tmp_path / "t1.pem") == "New"
    assert resume(d.ports[0], version, tmp_path / "t2.pem") == "Reused"
    assert "key material" not in d.log()
    for k in (k1, k2, k3):  # never logged
        assert base64.b64encode(k).decode() not in d.log()


@pytest.mark.parametrize("version", VERSIONS)
def test_generated_keys_rotate_on_schedule(version, backend, daemon_factory, tmp_path):
    """rotate_s 2: a ticket resumes while its key encrypts and during the next period (renewed
    under the new key), and not after that."""
    d = daemon_factory(config(backend, rotate_s=2))
    port = d.ports[0]
    name0 = new_ticket(port, version, tmp_path / "t0.pem")

    def wait_rotation(than):
        deadline = time.monotonic() + 10
        while True:
            name = new_ticket(port, version, tmp_path / "probe.pem")
            if name != than:
                return name
            assert time.monotonic() < deadline, "no new ticket key within 10 s"
            time.sleep(0.2)

    assert resume(port, version, tmp_path / "t0.pem") == "Reused"
    name1 = wait_rotation(name0)
    # name0's key now only decrypts: still resumes, and the ticket is renewed under name1
    resume_renewed(port, version, tmp_path / "t0.pem", tmp_path, name1)
    wait_rotation(name1)
    assert resume(port, version, tmp_path / "t0.pem") == "New"


def test_generated_keys_survive_a_reload_that_changes_rotate_s(backend, daemon_factory,
                                                               tmp_path):
    """A reload that shortens rotate_s starts the new schedule at the reload: the key in use
    keeps encrypting for one new period, so earlier tickets still resume. (Measuring the period
    from startup with the new length would jump several periods and drop every key.)"""
    import json
    d = daemon_factory(config(backend, rotate_s=600))
    port = d.ports[0]
    name0 = new_ticket(port, "-tls1_3", tmp_path / "t0.pem")
    time.sleep(7)  # 2 periods of 3 s since startup
    cfg = json.loads(open(d.config_path).read())
    cfg["listeners"][0]["session_tickets"] = {"rotate_s": 3}
    with open(d.config_path, "w") as f:
        json.dump(cfg, f)
    reload(d)
    assert resume(port, "-tls1_3", tmp_path / "t0.pem") == "Reused"
    assert new_ticket(port, "-tls1_3", tmp_path / "t1.pem") == name0


def test_key_file_errors_name_file_and_path(tmp_path):
    import json
    good = key_file(tmp_path / "good.key", os.urandom(80))
    loose = key_file(tmp_path / "loose.key", os.urandom(80))
    os.chmod(loose, 0o644)
    bad = tmp_path / "bad.key"
    bad.write_text("# comment\n" + base64.b64encode(os.urandom(80)).decode() + "\nnot-a-key\n")
    os.chmod(bad, 0o600)
    empty = tmp_path / "empty.key"
    empty.write_text("# nothing\n")
    os.chmod(empty, 0o600)
    for tickets, resumption, needle in [
            ({"key_file": loose}, True,
             "listeners[0].session_tickets.key_file: %s is accessible by other users (mode 0644)" % loose),
            ({"key_file": str(bad)}, True,
             "listeners[0].session_tickets.key_file: %s: line 3: not a key" % bad),
            ({"key_file": str(empty)}, True,
             "listeners[0].session_tickets.key_file: %s: no key" % empty),
            ({"key_file": str(tmp_path / "missing.key")}, True,
             "listeners[0].session_tickets.key_file: %s: No such file or directory"
             % (tmp_path / "missing.key")),
            ({"key_file": good}, False,
             "listeners[0].session_tickets.key_file: needs \"session_resumption\": true"),
            ({"rotate_s": 0}, True,
             "listeners[0].session_tickets.rotate_s: must be an integer from 1 to 604800")]:
        cfg = tls_config(["127.0.0.1:1"], session_resumption=resumption,
                         session_tickets=tickets)
        cfg["certificates"]["ec"] = {"cert": fixture("server-ec.chain.pem"),
                                     "key": fixture("server-ec.key")}
        path = tmp_path / "c.json"
        path.write_text(json.dumps(cfg))
        r = subprocess.run([KTLSD, "--check", "-c", str(path)], capture_output=True, timeout=30)
        out = (r.stdout + r.stderr).decode()
        assert r.returncode != 0 and ("%s: %s" % (path, needle)) in out, (needle, out)

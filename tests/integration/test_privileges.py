"""Least privilege (docs/security.md): with "user", the running daemon has that uid and gid in
every thread, exactly CAP_NET_BIND_SERVICE (effective, permitted and bounding), no inheritable or
ambient capability and no_new_privs; it still serves, reloads and replaces certificates as that
user. Private-key files readable by others are refused (or, with key_file_permissions "warn",
logged), and with "user" a key must belong to that user. The control socket stays 0600 and
refuses other uids after the drop."""
import json
import os
import pathlib
import pwd
import shutil
import stat
import subprocess
import tempfile

import pytest

from conftest import KTLSD, fixture, https_get, tls_config
from ctl_client import ctl

CAP_NET_BIND_SERVICE = 10
NOBODY = pwd.getpwnam("nobody")


def status(pid, task=None):
    path = "/proc/%d/task/%d/status" % (pid, task) if task else "/proc/%d/status" % pid
    out = {}
    with open(path) as f:
        for line in f:
            k, _, v = line.partition(":")
            out[k] = v.split()
    return out


@pytest.fixture
def keydir():
    """The EC test certificate and key in a directory owned by nobody, key 0600 (pytest's
    tmp_path is under a 0700 directory nobody cannot enter)."""
    top = pathlib.Path(tempfile.mkdtemp(prefix="ktlsd-priv-"))
    d = top / "certs"
    d.mkdir()
    for name in ("server-ec.chain.pem", "server-ec.key", "server-rsa.chain.pem",
                 "server-rsa.key"):
        shutil.copy(fixture(name), d / name)
    for p in [d, *d.iterdir()]:
        os.chown(p, NOBODY.pw_uid, NOBODY.pw_gid)
    os.chmod(d / "server-ec.key", 0o600)
    os.chmod(d / "server-rsa.key", 0o600)
    os.chmod(top, 0o755)
    yield d
    shutil.rmtree(top)


def config(backend, keydir, **top):
    cfg = tls_config([backend.addr])
    cfg["certificates"] = {"ec": {"cert": str(keydir / "server-ec.chain.pem"),
                                  "key": str(keydir / "server-ec.key")}}
    cfg.update(top)
    return cfg


def check_only(cfg, tmp_path):
    path = tmp_path / "check.json"
    path.write_text(json.dumps(cfg))
    return subprocess.run([KTLSD, "-c", str(path), "--check"], capture_output=True, text=True,
                          timeout=30)


def test_daemon_runs_as_user_with_only_net_bind_service(backend, daemon_factory, keydir):
    d = daemon_factory(config(backend, keydir, user="nobody"))
    d.wait_log("running as uid %d" % NOBODY.pw_uid)
    d.wait_log("serving with")  # logged once the workers and the control thread run
    want = "%016x" % (1 << CAP_NET_BIND_SERVICE)
    tasks = [int(t) for t in os.listdir("/proc/%d/task" % d.proc.pid)]
    assert len(tasks) >= 3  # main, the control thread and the workers: each is checked
    for t in [None, *tasks]:
        st = status(d.proc.pid, t)
        assert st["Uid"] == [str(NOBODY.pw_uid)] * 4, st["Uid"]
        assert st["Gid"] == [str(NOBODY.pw_gid)] * 4, st["Gid"]
        assert st["Groups"] == [str(NOBODY.pw_gid)]
        assert st["CapEff"] == [want] and st["CapPrm"] == [want] and st["CapBnd"] == [want]
        assert st["CapInh"] == ["0" * 16] and st["CapAmb"] == ["0" * 16]
        assert st["NoNewPrivs"] == ["1"]
    assert https_get(d.ports[0])[0] == 200
    # Reload re-reads the config and the key as nobody.
    rep = ctl(d.ctl_path, {"cmd": "reload"})
    assert rep.get("ok"), rep
    # cert-set writes the files (the directory belongs to nobody), then reloads.
    rsa = (keydir / "server-rsa.chain.pem").read_text(), (keydir / "server-rsa.key").read_text()
    rep = ctl(d.ctl_path, {"cmd": "cert-set", "name": "ec", "cert": rsa[0], "key": rsa[1]})
    assert rep.get("ok"), rep
    key = os.stat(keydir / "server-ec.key")
    assert key.st_uid == NOBODY.pw_uid and stat.S_IMODE(key.st_mode) == 0o600
    assert https_get(d.ports[0])[0] == 200
    # The control socket was made by root before the drop: 0600, root's, other uids refused.
    sock = os.stat(d.ctl_path)
    assert stat.S_IMODE(sock.st_mode) == 0o600 and sock.st_uid == 0
    os.chmod(d.ctl_path, 0o666)
    os.chmod(os.path.dirname(d.ctl_path), 0o755)
    client = ("import socket, sys\n"
              "s = socket.socket(socket.AF_UNIX); s.connect(sys.argv[1])\n"
              "s.sendall(b'{\"cmd\": \"reload\"}\\n'); print(s.makefile().readline())\n")
    r = subprocess.run(["setpriv", "--reuid=%d" % NOBODY.pw_uid, "--regid=%d" % NOBODY.pw_gid,
                        "--clear-groups", "/usr/bin/python3", "-c", client, d.ctl_path],
                       capture_output=True, text=True, timeout=30)
    assert "permission denied: uid %d" % NOBODY.pw_uid in r.stdout, r.stdout + r.stderr


def test_a_key_readable_by_others_is_refused(backend, keydir, tmp_path):
    os.chmod(keydir / "server-ec.key", 0o644)
    r = check_only(config(backend, keydir), tmp_path)
    assert r.returncode != 0
    assert ("check.json: certificates.ec.key: %s is accessible by other users (mode 0644)"
            % (keydir / "server-ec.key")) in r.stderr, r.stderr
    os.chmod(keydir / "server-ec.key", 0o640)
    r = check_only(config(backend, keydir), tmp_path)
    assert r.returncode != 0 and "is accessible by its group (mode 0640)" in r.stderr, r.stderr


def test_warn_mode_logs_and_serves(backend, daemon_factory, keydir):
    os.chmod(keydir / "server-ec.key", 0o644)
    d = daemon_factory(config(backend, keydir, key_file_permissions="warn"))
    d.wait_log("certificates.ec.key: %s is accessible by other users (mode 0644)"
               % (keydir / "server-ec.key"))
    assert "loaded anyway" in d.log()
    assert https_get(d.ports[0])[0] == 200


def test_with_user_a_key_must_belong_to_it(backend, keydir, tmp_path):
    os.chown(keydir / "server-ec.key", 0, 0)
    r = check_only(config(backend, keydir, user="nobody"), tmp_path)
    assert r.returncode != 0
    assert "certificates.ec.key: %s is owned by uid 0, not by uid %d" % (
        keydir / "server-ec.key", NOBODY.pw_uid) in r.stderr, r.stderr
    r = check_only(config(backend, keydir, user="no-such-user-ktlsd"), tmp_path)
    assert r.returncode != 0 and 'user: no user named "no-such-user-ktlsd"' in r.stderr
    r = check_only(config(backend, keydir, user="root"), tmp_path)
    assert r.returncode != 0 and 'user: "root" is root' in r.stderr

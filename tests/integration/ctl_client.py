"""Helpers for the control socket, ktlsctl and /metrics tests: a raw protocol client, ktlsctl
runs, a Prometheus text parser and TLS clients that report the certificate they were served."""
import json
import os
import re
import socket
import ssl
import subprocess
import time
import urllib.request

from conftest import BUILD, client_context

KTLSCTL = os.path.join(BUILD, "ktlsctl")


def wait_ctl(path, timeout=10.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with socket.socket(socket.AF_UNIX) as s:
                s.connect(path)
                return
        except OSError:
            time.sleep(0.05)
    raise TimeoutError("no control socket at %s" % path)


def read_line(s):
    data = b""
    while not data.endswith(b"\n"):
        chunk = s.recv(1 << 20)
        if not chunk:
            break
        data += chunk
    return data


def ctl(path, req, timeout=60):
    """One request (a dict, or bytes sent as they are) → the reply as a dict."""
    with socket.socket(socket.AF_UNIX) as s:
        s.settimeout(timeout)
        s.connect(path)
        s.sendall(req if isinstance(req, bytes) else json.dumps(req).encode() + b"\n")
        line = read_line(s)
    return json.loads(line)


def ktlsctl(path, *args, timeout=60):
    return subprocess.run([KTLSCTL, "-s", path, *args], capture_output=True, text=True,
                          timeout=timeout)


_SAMPLE = re.compile(r'^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})? (\S+)$')
_LABEL = re.compile(r'([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"')


def parse_metrics(text):
    """Prometheus text format → {(name, frozenset of (label, value)): float}; checks that every
    sample belongs to a family declared by # TYPE."""
    types, out = {}, {}
    for line in text.splitlines():
        if line.startswith("# TYPE "):
            _, _, name, kind = line.split(" ", 3)
            types[name] = kind
            continue
        if not line or line.startswith("#"):
            continue
        m = _SAMPLE.match(line)
        assert m, "not a sample line: %r" % line
        name, labels, value = m.groups()
        family = re.sub(r"_(bucket|sum|count)$", "", name) if name not in types else name
        assert family in types, "sample %s has no # TYPE" % name
        lab = frozenset((k, bytes(v, "utf-8").decode("unicode_escape"))
                        for k, v in _LABEL.findall(labels or ""))
        out[(name, lab)] = float(value)
    return out


def metric(samples, name, **labels):
    return samples.get((name, frozenset(labels.items())), 0.0)


def scrape(port, path="/metrics"):
    with urllib.request.urlopen("http://127.0.0.1:%d%s" % (port, path), timeout=10) as r:
        assert r.status == 200
        assert r.headers["Content-Type"].startswith("text/plain; version=0.0.4")
        return parse_metrics(r.read().decode())


def tls_request(port, request, ctx=None, timeout=20, sni="localhost"):
    """Sends request bytes over TLS; returns (all bytes received, the server's leaf in DER)."""
    ctx = ctx or client_context()
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as raw:
        with ctx.wrap_socket(raw, server_hostname=sni) as s:
            der = s.getpeercert(binary_form=True)
            s.sendall(request)
            data = b""
            while chunk := s.recv(1 << 20):
                data += chunk
    return data, der


def get(port, path="/", ctx=None, sni="localhost"):
    """GET over TLS: (status, body, leaf DER)."""
    data, der = tls_request(port, b"GET %s HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n"
                            b"\r\n" % path.encode(), ctx=ctx, sni=sni)
    head, _, body = data.partition(b"\r\n\r\n")
    return int(head.split()[1]), body, der


def pem_der(path):
    with open(path) as f:
        return ssl.PEM_cert_to_DER_cert(f.read())

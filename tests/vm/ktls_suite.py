#!/usr/bin/python3.11
"""The kTLS suite, run inside the QEMU guest by tests/vm/guest/20-ktls-splice.sh, and natively
by tests/integration/test_ktls_suite_native.py.

On a kernel with kTLS (the tls module loaded: /proc/net/tls_stat exists) every listener is forced
onto the ktls-splice tier; on one without, the same checks run on the userspace tier (datapath
"auto") and the daemon must say why kTLS was not used. Ports come from KTLS_SUITE_PORT0 (9400),
KTLS_SUITE_APP_PORT (8080) and KTLS_SUITE_SINK_PORT (8081).

The real daemon terminates TLS with every listener forced onto the ktls-splice tier, in front of
tools/demo_backend.py; real clients (Python's ssl, openssl s_client, gnutls-cli, and
gnutls_client on the GnuTLS library) move data through it. Each check prints PASS/FAIL with its name;
the exit status is 1 if any failed. VMTEST_MIB sets the transfer size (default 64 MiB each way).
"""
import atexit
import hashlib
import json
import os
import signal
import socket
import ssl
import subprocess
import sys
import tempfile
import threading
import time
import traceback

TOP = os.getcwd()
BUILD = os.environ["KTLSD_BUILD"]
VMBUILD = os.environ.get("VMTEST_BUILD", os.path.join(BUILD, "vm"))
FIX = os.path.join(BUILD, "fixtures")
KTLSD = os.path.join(BUILD, "ktlsd")
PY = sys.executable
MIB = int(os.environ.get("VMTEST_MIB", "64"))
# gnutls-cli's own I/O loop moves ~0.2 MiB/s under QEMU TCG (36 s for 8 MiB), so it exchanges
# GNUTLS_CLI_MIB each way; the bulk GnuTLS transfers go through gnutls_client (same library,
# ~8 MiB/s there).
GNUTLS_CLI_MIB = min(MIB, int(os.environ.get("VMTEST_GNUTLS_CLI_MIB", "1")))
BIG = MIB << 20
sys.path.insert(0, os.path.join(TOP, "tools"))
import demo_backend  # noqa: E402

# (listener name, protocol version, TLS ≤1.2 cipher or TLS 1.3 suite, gnutls priority part)
COMBOS = [
    ("tls12-aes128", "TLSv1.2", "ECDHE-ECDSA-AES128-GCM-SHA256", "+VERS-TLS1.2:-CIPHER-ALL:+AES-128-GCM"),
    ("tls12-aes256", "TLSv1.2", "ECDHE-ECDSA-AES256-GCM-SHA384", "+VERS-TLS1.2:-CIPHER-ALL:+AES-256-GCM"),
    ("tls12-chacha", "TLSv1.2", "ECDHE-ECDSA-CHACHA20-POLY1305", "+VERS-TLS1.2:-CIPHER-ALL:+CHACHA20-POLY1305"),
    ("tls13-aes128", "TLSv1.3", "TLS_AES_128_GCM_SHA256", "+VERS-TLS1.3:-CIPHER-ALL:+AES-128-GCM"),
    ("tls13-aes256", "TLSv1.3", "TLS_AES_256_GCM_SHA384", "+VERS-TLS1.3:-CIPHER-ALL:+AES-256-GCM"),
    ("tls13-chacha", "TLSv1.3", "TLS_CHACHA20_POLY1305_SHA256", "+VERS-TLS1.3:-CIPHER-ALL:+CHACHA20-POLY1305"),
]
PORT0 = int(os.environ.get("KTLS_SUITE_PORT0", "9400"))
APP_PORT = int(os.environ.get("KTLS_SUITE_APP_PORT", "8080"))
SINK_PORT = int(os.environ.get("KTLS_SUITE_SINK_PORT", "8081"))
KTLS = os.path.exists("/proc/net/tls_stat")
TIER = "ktls-splice" if KTLS else "userspace"
results = []
skipped = []


ONLY = os.environ.get("VMTEST_ONLY", "")


def check(name):
    def run(fn):
        if ONLY and ONLY not in name:
            return fn
        t = time.monotonic()
        try:
            fn()
            results.append(True)
            print("PASS %s (%.1fs)" % (name, time.monotonic() - t), flush=True)
        except Exception:
            results.append(False)
            print("FAIL %s" % name, flush=True)
            traceback.print_exc(file=sys.stdout)
        return fn
    return run


def wait_port(port, timeout=30, proc=None):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc and proc.poll() is not None:
            raise RuntimeError("exited with %d" % proc.returncode)
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return
        except OSError:
            time.sleep(0.1)
    raise TimeoutError("port %d" % port)


def tls_stat():
    with open("/proc/net/tls_stat") as f:
        return {k: int(v) for k, v in (line.split() for line in f)}


def expected(n, seed):
    h = hashlib.sha256()
    for b in demo_backend.stream_blocks(n, seed):
        h.update(b)
    return h.hexdigest()


def sink_backend(port):
    """Reads until EOF, then answers '<sha256> <length>' and closes: proves half-closes."""
    srv = socket.socket()
    srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    srv.bind(("127.0.0.1", port))
    srv.listen(16)

    def serve(c):
        h, n = hashlib.sha256(), 0
        while chunk := c.recv(1 << 16):
            h.update(chunk)
            n += len(chunk)
        c.sendall(("%s %d" % (h.hexdigest(), n)).encode())
        c.close()

    def loop():
        while True:
            c, _ = srv.accept()
            threading.Thread(target=serve, args=(c,), daemon=True).start()
    threading.Thread(target=loop, daemon=True).start()


def config(ctl):
    listeners, policies = [], {}
    for i, (name, ver, cipher, _) in enumerate(COMBOS):
        pol = {"versions": [ver]}
        pol["ciphersuites" if ver == "TLSv1.3" else "ciphers"] = [cipher]
        policies[name] = pol
        listeners.append({"name": name, "bind": "127.0.0.1:%d" % (PORT0 + i),
                          "security_policy": name, "certificates": ["ec"], "backend": "app",
                          "datapath": "ktls-splice" if KTLS else "auto"})
    listeners.append({"name": "sink", "bind": "127.0.0.1:%d" % (PORT0 + 10),
                      "security_policy": "tls13-aes128", "certificates": ["ec"],
                      "backend": "sink", "datapath": "ktls-splice" if KTLS else "auto"})
    listeners.append({"name": "proxy", "bind": "127.0.0.1:%d" % (PORT0 + 12),
                      "security_policy": "tls13-aes128", "certificates": ["ec"],
                      "backend": "sink", "proxy_protocol": "v1",
                      "datapath": "ktls-splice" if KTLS else "auto"})
    for k, pol in ((13, "tls12-aes128"), (14, "tls13-aes128")):
        listeners.append({"name": "resume-" + pol[:5], "bind": "127.0.0.1:%d" % (PORT0 + k),
                          "security_policy": pol, "certificates": ["ec"], "backend": "app",
                          "session_resumption": True,
                          "datapath": "ktls-splice" if KTLS else "auto"})
    policies["cbc"] = {"versions": ["TLSv1.2"], "ciphers": ["ECDHE-ECDSA-AES128-SHA256"]}
    listeners.append({"name": "cbc", "bind": "127.0.0.1:%d" % (PORT0 + 11),
                      "security_policy": "cbc", "certificates": ["ec"], "backend": "app"})
    return {"listeners": listeners, "security_policies": policies,
            "certificates": {"ec": {"cert": os.path.join(FIX, "server-ec.chain.pem"),
                                    "key": os.path.join(FIX, "server-ec.key")}},
            "backends": {"app": {"servers": ["127.0.0.1:%d" % APP_PORT]},
                         "sink": {"servers": ["127.0.0.1:%d" % SINK_PORT]}},
            "control": {"socket": ctl},
            "workers": 1}


def py_ctx(ver, cipher):
    ctx = ssl.create_default_context(cafile=os.path.join(FIX, "ca.pem"))
    v = ssl.TLSVersion.TLSv1_3 if ver == "TLSv1.3" else ssl.TLSVersion.TLSv1_2
    ctx.minimum_version = ctx.maximum_version = v
    if ver != "TLSv1.3":
        ctx.set_ciphers(cipher)
    return ctx


def py_request(port, ctx, req, sink=None):
    """Sends req (bytes or an iterable of bytes), returns the body; a clean close_notify is
    required at the end (ragged EOFs raise)."""
    with socket.create_connection(("127.0.0.1", port), timeout=120) as raw:
        with ctx.wrap_socket(raw, server_hostname="localhost",
                             suppress_ragged_eofs=False) as s:
            for part in ([req] if isinstance(req, bytes) else req):
                s.sendall(part)
            buf = b""
            while b"\r\n\r\n" not in buf:
                chunk = s.recv(65536)
                assert chunk, "closed before the response head"
                buf += chunk
            head, _, body = buf.partition(b"\r\n\r\n")
            assert head.startswith(b"HTTP/1.1 200"), head
            n = len(body)
            if sink:
                sink.update(body)
            while chunk := s.recv(1 << 20):
                n += len(chunk)
                if sink:
                    sink.update(chunk)
                else:
                    body += chunk
            return body if not sink else n


def fin_exchange(port, data):
    """Sends data over TLS 1.3, then a TCP FIN (no close_notify); returns the client's port and
    everything received until the server's close_notify."""
    with socket.create_connection(("127.0.0.1", port), timeout=60) as raw:
        cport = raw.getsockname()[1]
        with py_ctx("TLSv1.3", None).wrap_socket(raw, server_hostname="localhost",
                                                 suppress_ragged_eofs=False) as s:
            s.sendall(data)
            socket.socket.shutdown(s, socket.SHUT_WR)
            reply = b""
            while chunk := s.recv(65536):
                reply += chunk
    return cport, reply


def upload_parts(n, seed, path="/sha256"):
    yield (b"POST %s HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\nConnection: close\r\n\r\n"
           % (path.encode(), n))
    yield from demo_backend.stream_blocks(n, seed)


def main():
    os.environ["OPENSSL_CONF"] = "/usr/lib/ssl/openssl.cnf"
    backend = subprocess.Popen([PY, "tools/demo_backend.py", str(APP_PORT)],
                               stderr=subprocess.DEVNULL)
    sink_backend(SINK_PORT)
    tmp = tempfile.mkdtemp()
    cfgpath = os.path.join(tmp, "ktlsd.json")
    with open(cfgpath, "w") as f:
        json.dump(config(os.path.join(tmp, "ctl.sock")), f)
    logpath = cfgpath + ".log"
    log = open(logpath, "wb")
    daemon = subprocess.Popen([KTLSD, "-f", "-l", "debug", "-c", cfgpath], stderr=log)
    # whatever ends this process, no helper outlives it (an orphan holding our stdout would
    # keep a caller reading it waiting)
    atexit.register(backend.kill)
    atexit.register(lambda: daemon.poll() is None and daemon.kill())
    wait_port(APP_PORT)
    for port in [PORT0 + i for i in range(len(COMBOS))] + [PORT0 + k for k in range(10, 15)]:
        try:
            wait_port(port, timeout=30, proc=daemon)
        except (TimeoutError, RuntimeError):
            with open(logpath, "rb") as f:
                print("ktlsd did not listen on %d; its log:\n%s"
                      % (port, f.read().decode(errors="replace")[-3000:]), flush=True)
            raise
    stat0 = tls_stat() if KTLS else {}
    ktls_conns = 0
    gnutls_client = os.path.join(VMBUILD, "gnutls_client")

    def the_log():
        with open(logpath, "rb") as f:
            return f.read().decode(errors="replace")

    for i, (name, ver, cipher, prio) in enumerate(COMBOS):
        port = PORT0 + i

        @check("%s python ssl: %d MiB download, byte-exact, ends with close_notify" % (name, MIB))
        def _():
            h = hashlib.sha256()
            req = b"GET /bytes/%d?seed=%d HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n" % (BIG, i)
            assert py_request(port, py_ctx(ver, cipher), req, sink=h) == BIG
            assert h.hexdigest() == expected(BIG, i)

        @check("%s python ssl: %d MiB upload, byte-exact" % (name, MIB))
        def _():
            body = py_request(port, py_ctx(ver, cipher), upload_parts(BIG, 100 + i))
            assert body.decode().split() == [expected(BIG, 100 + i), str(BIG)], body

        base = ["openssl", "s_client", "-quiet", "-CAfile", os.path.join(FIX, "ca.pem"),
                "-servername", "localhost", "-connect", "127.0.0.1:%d" % port,
                "-tls1_3" if ver == "TLSv1.3" else "-tls1_2"]
        base += ["-ciphersuites", cipher] if ver == "TLSv1.3" else ["-cipher", cipher]

        @check("%s openssl s_client: %d MiB each way, byte-exact" % (name, MIB))
        def _():
            down = subprocess.run(base, input=b"GET /bytes/%d?seed=%d HTTP/1.1\r\nHost: x\r\n"
                                  b"Connection: close\r\n\r\n" % (BIG, 200 + i),
                                  capture_output=True, timeout=600)
            body = down.stdout.split(b"\r\n\r\n", 1)[1]
            assert len(body) == BIG and hashlib.sha256(body).hexdigest() == expected(BIG, 200 + i)
            up = subprocess.run(base, input=b"".join(upload_parts(BIG, 300 + i)),
                                capture_output=True, timeout=600)
            assert up.stdout.split(b"\r\n\r\n", 1)[1].decode().split() == \
                [expected(BIG, 300 + i), str(BIG)], up.stderr[-500:]

        @check("%s gnutls_client (GnuTLS): %d MiB each way, byte-exact" % (name, MIB))
        def _():
            r = subprocess.run([gnutls_client, "download", "127.0.0.1", str(port),
                                os.path.join(FIX, "ca.pem"), "NORMAL:-VERS-ALL:" + prio, str(MIB),
                                str(400 + i)], capture_output=True, timeout=600)
            assert r.stdout.decode().split() == [expected(BIG, 400 + i), str(BIG)], \
                r.stdout + r.stderr
            r = subprocess.run([gnutls_client, "upload", "127.0.0.1", str(port),
                                os.path.join(FIX, "ca.pem"), "NORMAL:-VERS-ALL:" + prio, str(MIB)],
                               capture_output=True, timeout=600)
            assert r.returncode == 0, r.stdout + r.stderr

        # --logfile keeps gnutls-cli's own messages out of stdout, which carries the response
        gnutls = ["gnutls-cli", "--logfile=/dev/null", "--x509cafile", os.path.join(FIX, "ca.pem"),
                  "-p", str(port), "--priority", "NORMAL:-VERS-ALL:" + prio, "localhost"]

        @check("%s gnutls-cli: %d MiB each way, byte-exact" % (name, GNUTLS_CLI_MIB))
        def _():
            small = GNUTLS_CLI_MIB << 20
            down = subprocess.run(gnutls, input=b"GET /bytes/%d?seed=%d HTTP/1.1\r\nHost: x\r\n"
                                  b"Connection: close\r\n\r\n" % (small, 600 + i),
                                  capture_output=True, timeout=600)
            assert b"\r\n\r\n" in down.stdout, (down.returncode, down.stderr[-800:])
            body = down.stdout.split(b"\r\n\r\n", 1)[1]
            assert hashlib.sha256(body).hexdigest() == expected(small, 600 + i), len(body)
            up = subprocess.run(gnutls, input=b"".join(upload_parts(small, 500 + i)),
                                capture_output=True, timeout=600)
            assert up.stdout.split(b"\r\n\r\n", 1)[1].decode().split() == \
                [expected(small, 500 + i), str(small)], up.stderr[-800:]

        @check("%s: the log shows %s %s on the %s tier" % (name, ver, cipher, TIER))
        def _():
            lines = [l for l in the_log().splitlines() if "listener=%s " % name in l and "result=ok" in l]
            assert len(lines) == 8, lines
            for l in lines:
                assert "proto=%s" % ver in l and "tier=%s " % TIER in l, l
        ktls_conns += 8

    port = PORT0 + 10

    @check("client close_notify (gnutls-cli half-close) reaches the backend as EOF; the reply comes back")
    def _():
        data = os.urandom(3 << 20)
        out = subprocess.run(["gnutls-cli", "--logfile=/dev/null", "--x509cafile", os.path.join(FIX, "ca.pem"), "-p",
                              str(port), "localhost"], input=data, capture_output=True, timeout=120)
        assert ("%s %d" % (hashlib.sha256(data).hexdigest(), len(data))).encode() in out.stdout, out.stderr[-800:]
    ktls_conns += 1

    @check("client TCP FIN reaches the backend as EOF; the reply and close_notify come back")
    def _():
        data = os.urandom(1 << 20)
        _, reply = fin_exchange(port, data)
        assert reply.decode() == "%s %d" % (hashlib.sha256(data).hexdigest(), len(data))
    ktls_conns += 1

    @check("a PROXY v1 header reaches the backend before the client's bytes (%s tier)" % TIER)
    def _():
        data = os.urandom(1 << 20)
        cport, reply = fin_exchange(PORT0 + 12, data)
        sent = b"PROXY TCP4 127.0.0.1 127.0.0.1 %d %d\r\n" % (cport, PORT0 + 12) + data
        assert reply.decode() == "%s %d" % (hashlib.sha256(sent).hexdigest(), len(sent))
        line = [l for l in the_log().splitlines() if "listener=proxy " in l][-1]
        assert "tier=%s " % TIER in line, line
    ktls_conns += 1

    for k, ver in ((13, "TLSv1.2"), (14, "TLSv1.3")):
        name = "resume-tls1%s" % ver[-1]

        n = min(BIG, 16 << 20)

        @check("%s: session tickets on, full then resumed handshakes, %d MiB each way "
               "byte-exact on the %s tier" % (name, n >> 20, TIER))
        def _():
            # OpenSSL counts its NewSessionTicket records (2 after a TLS 1.3 full handshake,
            # before a TLS 1.2 server's CCS) into what it hands the kernel: a miscount
            # breaks the first record the kernel sends or reads.
            ctx = py_ctx(ver, "ECDHE-ECDSA-AES128-GCM-SHA256")
            session, ports = None, []
            for attempt, seed in enumerate((70 + k, 80 + k)):
                with socket.create_connection(("127.0.0.1", PORT0 + k), timeout=120) as raw:
                    ports.append(raw.getsockname()[1])
                    with ctx.wrap_socket(raw, server_hostname="localhost", session=session,
                                         suppress_ragged_eofs=False) as s:
                        assert s.session_reused == (attempt == 1), attempt
                        for part in upload_parts(n, seed):
                            s.sendall(part)
                        buf = b""
                        while chunk := s.recv(1 << 20):
                            buf += chunk
                        assert buf.split(b"\r\n\r\n", 1)[1].decode().split()[0] == \
                            expected(n, seed), buf[:300]
                        session = s.session
                h = hashlib.sha256()
                req = (b"GET /bytes/%d?seed=%d HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
                       % (n, seed))
                with socket.create_connection(("127.0.0.1", PORT0 + k), timeout=120) as raw:
                    ports.append(raw.getsockname()[1])
                    with ctx.wrap_socket(raw, server_hostname="localhost", session=session,
                                         suppress_ragged_eofs=False) as s:
                        assert s.session_reused, "the download did not resume"
                        s.sendall(req)
                        buf = b""
                        while b"\r\n\r\n" not in buf:
                            buf += s.recv(65536)
                        h.update(buf.split(b"\r\n\r\n", 1)[1])
                        while chunk := s.recv(1 << 20):
                            h.update(chunk)
                        session = s.session
                assert h.hexdigest() == expected(n, seed)
            log = the_log().splitlines()
            for i, p in enumerate(ports):
                # By port and listener: an earlier check's client may have had the same port.
                line = [l for l in log if "peer=127.0.0.1:%d listener=%s " % (p, name) in l
                        and "result=ok" in l]
                assert len(line) == 1, (p, line)
                assert "tier=%s " % TIER in line[0] and "proto=%s " % ver in line[0], line[0]
                assert ("resumed=yes" if i else "resumed=no") in line[0], line[0]
        ktls_conns += 4

    @check("application data in the same segment as the client's Finished (TLS 1.3) is not lost")
    def _():
        ctx = py_ctx("TLSv1.3", None)
        inc, out = ssl.MemoryBIO(), ssl.MemoryBIO()
        obj = ctx.wrap_bio(inc, out, server_hostname="localhost")
        with socket.create_connection(("127.0.0.1", PORT0 + 3), timeout=60) as s:
            while True:
                try:
                    obj.do_handshake()
                    break
                except ssl.SSLWantReadError:
                    if out.pending:
                        s.sendall(out.read())
                    chunk = s.recv(65536)
                    assert chunk, "the server closed during the handshake"
                    inc.write(chunk)
            req = b"GET /early HTTP/1.1\r\nHost: x\r\nConnection: close\r\nX-Pad: %s\r\n\r\n" % (b"p" * 300)
            obj.write(req)
            s.sendall(out.read())  # Finished + the request in one send
            reply = b""
            while True:
                try:
                    data = obj.read(65536)
                    if not data:  # close_notify
                        break
                    reply += data
                except ssl.SSLWantReadError:
                    chunk = s.recv(65536)
                    if not chunk:
                        break
                    inc.write(chunk)
                except ssl.SSLZeroReturnError:
                    break
        assert b"path=/early" in reply, reply[:300]
    ktls_conns += 1

    @check("an alert from the client mid-stream closes the connection and is logged")
    def _():
        r = subprocess.run([gnutls_client, "alert", "127.0.0.1", str(PORT0 + 3),
                            os.path.join(FIX, "ca.pem"), "NORMAL"],
                           capture_output=True, timeout=60)
        assert r.returncode == 0, r.stdout + r.stderr
        # kTLS: ktlsd reads the alert record itself; userspace: ktlsd's record layer reports it
        text = "client sent alert 80" if KTLS else "alert internal error"
        deadline = time.monotonic() + 10
        while text not in the_log():
            assert time.monotonic() < deadline, the_log()[-2000:]
            time.sleep(0.2)
    ktls_conns += 1

    @check("a TLS 1.3 KeyUpdate from the client: %s" % (
        "closes cleanly with a log line (the kernel cannot follow it before 6.14)" if KTLS
        else "ktlsd's record layer follows it and the connection goes on"))
    def _():
        # s_client takes "K" as a command only when it arrives alone in a read, and not with
        # -ign_eof; stdin stays open until the response had time to arrive
        p = subprocess.Popen(["openssl", "s_client", "-CAfile", os.path.join(FIX, "ca.pem"),
                              "-servername", "localhost", "-connect", "127.0.0.1:%d" % (PORT0 + 3)],
                             stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        time.sleep(1)
        p.stdin.write(b"K\n")
        p.stdin.flush()
        time.sleep(1)
        try:
            p.stdin.write(b"GET /after-keyupdate HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
            p.stdin.flush()
        except BrokenPipeError:
            pass  # kTLS: ktlsd closed the connection at the KeyUpdate
        time.sleep(3)
        out, err = p.communicate(timeout=60)
        r = subprocess.CompletedProcess(p.args, p.returncode, out, err)
        if not KTLS:
            assert b"path=/after-keyupdate" in r.stdout, r.stdout[-500:]
            return
        deadline = time.monotonic() + 10
        while "KeyUpdate" not in the_log():
            assert time.monotonic() < deadline, the_log()[-2000:]
            time.sleep(0.2)
    ktls_conns += 1

    @check("a CBC suite stays on the userspace tier and the log says why")
    def _():
        ctx = py_ctx("TLSv1.2", "ECDHE-ECDSA-AES128-SHA256")
        body = py_request(PORT0 + 11, ctx, b"GET /cbc HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        assert b"path=/cbc" in body
        line = [l for l in the_log().splitlines() if "listener=cbc " in l][-1]
        # with kTLS the reason is given; without, the startup line already said why
        assert ("tier=userspace (cipher not offloadable to kTLS)" if KTLS
                else "tier=userspace backend=") in line, line

    @check("the startup log says whether kTLS is used, and why not")
    def _():
        want = "datapath: kTLS available" if KTLS else "datapath: kTLS not used: the kernel has no TLS ULP"
        assert want in the_log(), the_log()[:1000]

    if KTLS:
        @check("/proc/net/tls_stat: TlsTxSw and TlsRxSw rose by the number of kTLS connections")
        def _():
            stat1 = tls_stat()
            print("  tls_stat delta: " + ", ".join("%s +%d" % (k, stat1[k] - stat0.get(k, 0))
                                                    for k in sorted(stat1) if stat1[k] != stat0.get(k, 0)))
            assert stat1["TlsTxSw"] - stat0["TlsTxSw"] == ktls_conns, (ktls_conns, stat0, stat1)
            assert stat1["TlsRxSw"] - stat0["TlsRxSw"] == ktls_conns, (ktls_conns, stat0, stat1)
    else:
        skipped.append("/proc/net/tls_stat counters: this kernel has no kTLS")
        print("SKIP /proc/net/tls_stat counters: this kernel has no kTLS (no tls module)",
              flush=True)

    @check("SIGTERM: the daemon drains and exits 0")
    def _():
        daemon.send_signal(signal.SIGTERM)
        assert daemon.wait(30) == 0

    backend.kill()
    print("ktls suite: %d passed, %d failed, %d skipped"
          % (results.count(True), results.count(False), len(skipped)))
    if not all(results):
        print("---- ktlsd log (tail) ----")
        print(the_log()[-6000:])
    return 0 if all(results) else 1


if __name__ == "__main__":
    sys.exit(main())

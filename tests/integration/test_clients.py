"""Real TLS clients through the real daemon to a real backend: curl, openssl s_client, gnutls-cli
and Python's ssl module; byte-exact transfers of 256 MiB each way; 1,000 concurrent clients."""
import asyncio
import hashlib
import resource
import socket
import ssl
import subprocess

from conftest import SCALE, client_context, expected_sha256, fixture, https_get, tls_config

BIG = int((256 << 20) * SCALE)  # smaller under valgrind
N_CONCURRENT = max(50, int(1000 * SCALE))


def test_python_ssl_get_reaches_backend(daemon):
    status, body = https_get(daemon.ports[0], "/hello")
    assert status == 200
    assert body.startswith(b"hello from the backend behind ktlsd: path=/hello")
    daemon.wait_log("listener=web sni=localhost cert=ec proto=TLSv1.3")
    daemon.wait_log("tier=userspace backend=")


def test_curl_get(daemon):
    out = subprocess.run(["curl", "-sS", "--cacert", fixture("ca.pem"),
                          "https://localhost:%d/curl" % daemon.ports[0]],
                         capture_output=True, timeout=30, check=True)
    assert out.stdout.startswith(b"hello from the backend behind ktlsd: path=/curl")


def test_openssl_s_client_tls12_and_tls13(daemon):
    for version in ("-tls1_2", "-tls1_3"):
        req = b"GET /s_client HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n"
        out = subprocess.run(["openssl", "s_client", version, "-quiet", "-verify_return_error",
                              "-CAfile", fixture("ca.pem"), "-servername", "localhost",
                              "-connect", "127.0.0.1:%d" % daemon.ports[0]],
                             input=req, capture_output=True, timeout=30)
        assert out.returncode == 0, out.stderr
        assert b"hello from the backend behind ktlsd: path=/s_client" in out.stdout
    daemon.wait_log("proto=TLSv1.2 cipher=ECDHE-ECDSA-AES128-GCM-SHA256")


def test_gnutls_cli(daemon):
    req = b"GET /gnutls HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n"
    out = subprocess.run(["gnutls-cli", "--x509cafile", fixture("ca.pem"), "-p",
                          str(daemon.ports[0]), "localhost"],
                         input=req, capture_output=True, timeout=30)
    assert b"hello from the backend behind ktlsd: path=/gnutls" in out.stdout, out.stderr


def test_python_ssl_256mib_download_byte_exact(daemon):
    h = hashlib.sha256()
    n = 0
    with socket.create_connection(("127.0.0.1", daemon.ports[0])) as raw:
        with client_context().wrap_socket(raw, server_hostname="localhost") as s:
            s.sendall(b"GET /bytes/%d?seed=11 HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
                      % BIG)
            buf = b""
            while b"\r\n\r\n" not in buf:
                buf += s.recv(65536)
            head, _, rest = buf.partition(b"\r\n\r\n")
            assert head.startswith(b"HTTP/1.1 200")
            h.update(rest)
            n += len(rest)
            while True:
                chunk = s.recv(1 << 20)
                if not chunk:
                    break
                h.update(chunk)
                n += len(chunk)
    assert n == BIG
    assert h.hexdigest() == expected_sha256(BIG, 11)


def test_python_ssl_256mib_upload_byte_exact(daemon):
    h = hashlib.sha256()
    with socket.create_connection(("127.0.0.1", daemon.ports[0])) as raw:
        with client_context().wrap_socket(raw, server_hostname="localhost") as s:
            s.sendall(b"POST /sha256 HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n"
                      b"Connection: close\r\n\r\n" % BIG)
            for block in __import__("demo_backend").stream_blocks(BIG, 12):
                h.update(block)
                s.sendall(block)
            reply = b""
            while True:
                chunk = s.recv(65536)
                if not chunk:
                    break
                reply += chunk
    assert reply.split(b"\r\n\r\n", 1)[1].decode().split() == [h.hexdigest(), str(BIG)]


def test_curl_256mib_each_way_byte_exact(daemon, tmp_path):
    src = tmp_path / "up.bin"
    with open(src, "wb") as f:
        for block in __import__("demo_backend").stream_blocks(BIG, 13):
            f.write(block)
    url = "https://localhost:%d" % daemon.ports[0]
    up = subprocess.run(["curl", "-sS", "--cacert", fixture("ca.pem"), "-T", str(src),
                         url + "/sha256"], capture_output=True, timeout=120, check=True)
    assert up.stdout.decode().split() == [expected_sha256(BIG, 13), str(BIG)]
    down = subprocess.run("curl -sS --cacert %s '%s/bytes/%d?seed=14' | sha256sum"
                          % (fixture("ca.pem"), url, BIG), shell=True, capture_output=True,
                          timeout=120, check=True)
    assert down.stdout.split()[0].decode() == expected_sha256(BIG, 14)


def test_openssl_s_client_256mib_each_way_byte_exact(daemon, tmp_path):
    req = tmp_path / "req.bin"
    with open(req, "wb") as f:
        f.write(b"PUT /sha256 HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n"
                b"Connection: close\r\n\r\n" % BIG)
        for block in __import__("demo_backend").stream_blocks(BIG, 15):
            f.write(block)
    cmd = ["openssl", "s_client", "-quiet", "-CAfile", fixture("ca.pem"), "-servername",
           "localhost", "-connect", "127.0.0.1:%d" % daemon.ports[0]]
    with open(req, "rb") as f:
        up = subprocess.run(cmd, stdin=f, capture_output=True, timeout=180)
    assert up.stdout.split(b"\r\n\r\n", 1)[1].decode().split() == \
        [expected_sha256(BIG, 15), str(BIG)]
    down_req = b"GET /bytes/%d?seed=16 HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n" % BIG
    down = subprocess.run(cmd, input=down_req, capture_output=True, timeout=180)
    body = down.stdout.split(b"\r\n\r\n", 1)[1]
    assert len(body) == BIG
    assert hashlib.sha256(body).hexdigest() == expected_sha256(BIG, 16)


def test_1000_concurrent_connections_all_served(backend, daemon_factory):
    # 1000 clients from one address: the per-source handshake cap (32) would refuse most. The
    # one Python thread that runs them all takes seconds to send the last ClientHellos, longer
    # than client_hello_ms (5 s) allows a real client: that deadline is not what this tests.
    daemon = daemon_factory(dict(tls_config([backend.addr], timeouts={"client_hello_ms": 30000,
                                                                      "handshake_ms": 30000}),
                                 limits={"per_source": {"max_handshakes": 0}}))
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (max(soft, 8192), max(hard, 8192)))
    ctx = client_context()
    port = daemon.ports[0]
    opened = asyncio.Event()
    count = {"open": 0}

    async def one(i):
        r, w = await asyncio.open_connection("127.0.0.1", port, ssl=ctx,
                                             server_hostname="localhost")
        count["open"] += 1
        if count["open"] == N_CONCURRENT:
            opened.set()
        await asyncio.wait_for(opened.wait(), 60)  # every connection is open at once
        w.write(b"GET /c%d HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n" % i)
        data = await asyncio.wait_for(r.read(), 60)
        w.close()
        return b"path=/c%d " % i in data

    async def main():
        return await asyncio.gather(*(one(i) for i in range(N_CONCURRENT)))

    results = asyncio.run(main())
    assert sum(results) == N_CONCURRENT

#!/usr/bin/python3
"""demo_backend — a small HTTP/1.1 backend for the ktlsd demo and tests.

  GET  /                 a greeting naming the path and the peer
  GET  /bytes/N?seed=S   N bytes of a deterministic stream (see stream_blocks), streamed
  POST|PUT /sha256       reads the body (Content-Length or chunked) and replies
                         "<sha256 hex> <length>"
  GET  /echo-headers     the request headers, as received

Usage: demo_backend.py [--bind 127.0.0.1] PORT
"""
import argparse
import hashlib
import http.server
import random
import socketserver
import sys
import urllib.parse

BLOCK = 65536


def stream_blocks(n, seed=0):
    """Yields the N-byte stream: block i is random.Random(seed * 1_000_003 + i).randbytes."""
    i = 0
    while n > 0:
        b = random.Random(seed * 1_000_003 + i).randbytes(min(BLOCK, n))
        n -= len(b)
        i += 1
        yield b


class Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "ktlsd-demo-backend"

    def log_message(self, fmt, *args):
        pass

    def reply(self, code, body, ctype="text/plain"):
        self.send_response(code)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_GET(self):
        url = urllib.parse.urlsplit(self.path)
        if url.path.startswith("/bytes/"):
            n = int(url.path[len("/bytes/"):])
            seed = int(urllib.parse.parse_qs(url.query).get("seed", ["0"])[0])
            self.send_response(200)
            self.send_header("Content-Type", "application/octet-stream")
            self.send_header("Content-Length", str(n))
            self.end_headers()
            for b in stream_blocks(n, seed):
                self.wfile.write(b)
            return
        if url.path == "/echo-headers":
            return self.reply(200, str(self.headers).encode())
        peer = "%s:%s" % self.client_address[:2]
        self.reply(200, ("hello from the backend behind ktlsd: path=%s peer=%s\n"
                         % (url.path, peer)).encode())

    def read_body(self, h):
        if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
            n = 0
            while True:
                size = int(self.rfile.readline().split(b";")[0], 16)
                if size == 0:
                    self.rfile.readline()
                    return n
                left = size
                while left:
                    b = self.rfile.read(min(left, 1 << 20))
                    h.update(b)
                    left -= len(b)
                n += size
                self.rfile.readline()
        left = n = int(self.headers.get("Content-Length", "0"))
        while left:
            b = self.rfile.read(min(left, 1 << 20))
            if not b:
                break
            h.update(b)
            left -= len(b)
        return n - left

    def do_POST(self):
        if urllib.parse.urlsplit(self.path).path != "/sha256":
            return self.reply(404, b"not found\n")
        h = hashlib.sha256()
        n = self.read_body(h)
        self.reply(200, ("%s %d\n" % (h.hexdigest(), n)).encode())

    do_PUT = do_POST


class Server(socketserver.ThreadingMixIn, http.server.HTTPServer):
    daemon_threads = True
    request_queue_size = 4096
    allow_reuse_address = True


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--bind", default="127.0.0.1")
    ap.add_argument("port", type=int)
    a = ap.parse_args()
    if ":" in a.bind:
        Server.address_family = __import__("socket").AF_INET6
    srv = Server((a.bind, a.port), Handler)
    print("demo backend on %s:%d" % (a.bind, a.port), file=sys.stderr, flush=True)
    srv.serve_forever()


if __name__ == "__main__":
    main()

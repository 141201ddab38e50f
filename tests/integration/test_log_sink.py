"""A log destination that stops reading never stops the daemon (docs/security.md, "Logging").

ktlsd's stderr is often a pipe (journald, a container runtime, a log shipper). When the reader
stalls, the pipe fills after some 64 KiB; a worker that wrote its log lines itself would then block
in write() and serve nobody. Here the daemon's stderr is a pipe that this test stops reading once
the daemon is serving: hundreds of connections, each logging a few lines at debug level, must all
be served, and once the pipe is read again the log says how many lines were dropped."""
import json
import os
import select
import signal
import shutil
import subprocess
import tempfile
import time

from conftest import FIX, KTLSD, TcpBackend, client_context, tls_config
from test_first_request import answer_one, one_request

CONNECTIONS = 2500  # about 3 lines of some 160 bytes each: more than the buffer and the pipe hold


def read_until(fd, text, timeout):
    data = b""
    deadline = time.monotonic() + timeout
    while text not in data:
        left = deadline - time.monotonic()
        assert left > 0, "%r not in the daemon's output:\n%s" % (text, data[-3000:])
        if select.select([fd], [], [], left)[0]:
            chunk = os.read(fd, 65536)
            assert chunk, "the daemon closed its stderr:\n%s" % data[-3000:].decode(errors="replace")
            data += chunk
    return data


def test_a_stalled_log_reader_does_not_stall_the_workers():
    backend = TcpBackend(answer_one)
    config = tls_config([backend.addr])
    sock_dir = tempfile.mkdtemp(prefix="ktlsd-it-")  # short: a socket path has 108 bytes
    config["control"] = {"socket": os.path.join(sock_dir, "ctl.sock")}
    config["bpf"] = {"pin_path": "/sys/fs/bpf/ktlsd-it-log-%d" % os.getpid()}
    path = os.path.join(FIX, "it-log-%d.json" % os.getpid())  # certificate paths are FIX's
    with open(path, "w") as f:
        json.dump(config, f)
    port = int(config["listeners"][0]["bind"].rsplit(":", 1)[1])
    r, w = os.pipe()
    proc = subprocess.Popen([KTLSD, "-f", "-l", "debug", "-c", path], stderr=w)
    os.close(w)
    try:
        read_until(r, b" serving with ", 10)
        # From here nobody reads the pipe.
        ctx = client_context()
        t0 = time.monotonic()
        for i in range(CONNECTIONS):
            one_request(port, ctx, nodelay=True)  # asserts the whole response came back
        elapsed = time.monotonic() - t0
        assert proc.poll() is None
        proc.send_signal(signal.SIGTERM)
        out = read_until(r, b"lines dropped", 20)
        proc.wait(20)
        assert proc.returncode == 0
        assert b"log: " in out and b"lines dropped: the log's destination did not keep up" in out
        assert elapsed < 60, "%d connections took %.1f s" % (CONNECTIONS, elapsed)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        os.close(r)
        os.unlink(path)
        shutil.rmtree(sock_dir, ignore_errors=True)

"""The kTLS suite (tests/vm/ktls_suite.py) on this machine's own kernel.

On a kernel without kTLS (the development and CI hosts) it runs every check on the userspace
tier and requires the daemon to say why kTLS was not used; the kernel-only check
(/proc/net/tls_stat) is reported as skipped. make vmtest runs the same file in QEMU with kTLS."""
import os
import random
import socket
import subprocess

from conftest import BUILD, TOP, free_port


def free_block(n):
    """The first of n consecutive ports free on 127.0.0.1 right now, for the suite's listeners
    PORT0 .. PORT0+n-1: below the ephemeral range, so neither free_port() (the backends) nor a
    client's source port can land in it."""
    rng = random.Random()
    for _ in range(200):
        base = rng.randrange(10000, 32768 - n)
        socks = []
        try:
            for p in range(base, base + n):
                s = socket.socket()
                socks.append(s)
                s.bind(("127.0.0.1", p))
            return base
        except OSError:
            continue
        finally:
            for s in socks:
                s.close()
    raise RuntimeError("no block of %d free ports" % n)


def test_ktls_suite_on_this_kernel(tmp_path):
    vmbuild = tmp_path / "vm"
    vmbuild.mkdir()
    client = vmbuild / "gnutls_client"
    subprocess.run(["cc", "-O2", "-Wall", "-Wextra", "-Werror", "-o", str(client),
                    os.path.join(TOP, "tests/vm/gnutls_client.c"), "-lgnutls"], check=True)
    env = dict(os.environ, KTLSD_BUILD=BUILD, VMTEST_BUILD=str(vmbuild), VMTEST_MIB="16",
               KTLS_SUITE_APP_PORT=str(free_port()), KTLS_SUITE_SINK_PORT=str(free_port()))
    env["KTLS_SUITE_PORT0"] = str(free_block(15))
    r = subprocess.run(["/usr/bin/python3", "tests/vm/ktls_suite.py"], cwd=TOP, env=env,
                       capture_output=True, timeout=900)
    out = r.stdout.decode(errors="replace")
    print(out)
    assert r.returncode == 0, out[-6000:]
    assert "0 failed" in out
    if not os.path.exists("/proc/net/tls_stat"):
        assert "SKIP /proc/net/tls_stat counters: this kernel has no kTLS" in out
        assert "PASS the startup log says whether kTLS is used, and why not" in out

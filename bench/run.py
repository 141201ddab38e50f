#!/usr/bin/python3
"""run.py BUILD — `make bench`: ktlsd against HAProxy, nginx (stream ssl) and stunnel, side by side.

Every terminator runs with the same settings: one worker (process or thread) pinned to CPU 1, TLSv1.3
with TLS_AES_128_GCM_SHA256 and X25519 only, no session tickets or cache, an ECDSA P-256 listener and
an RSA-2048 one with the same certificates, and the same backend (bench/sinkd.c) on loopback. The
client (bench/tlsload.c) and the backend share CPU 0, so the figures are per terminator core.

Each figure is measured REPS times, the terminators taking turns within each repetition (for the
newconn figure, within each variant, in an order that rotates), and the median is reported; a
ratio is the median of the per-repetition ratios from this one invocation, which cancels most of
a shared host's slow swings. The newconn variant with a target (NC_TARGET) runs
NC_TARGET_ROUNDS rounds per repetition. BENCH_QUICK=1 makes a short
smoke run. Output: bench/results/latest.md, bench/results/latest.json and bench/results/*.png
(gnuplot).

The "newconn" figure is a load balancer's commonest work: a new connection per request. NC_CONNS
clients in flight each connect, do a full handshake, write one request ('E' + 1 KiB, sinkd's echo)
right after SSL_connect, read and check the 1 KiB response, send close_notify and close; the
terminator connects the backend for each. It reports requests/s, the terminator's CPU per request
(/proc, warm-up included, over all requests) and the median time per request, for each variant
(TLS version, certificate, client TCP_NODELAY on or off) in NC_VARIANTS. With Nagle on, a client's
request waits for the ACK of its Finished: a server that sends nothing after the client's Finished
(TLS 1.3 without session tickets) delays it by its delayed ACK, ~40 ms. Runs are time-bounded, so a
40 ms-per-request terminator takes no longer. The variants are the whole matrix TLS 1.2/1.3 ×
ECDSA/RSA × NODELAY on/off (~4 min; it adds TLS 1.2 listeners, ECDHE-ECDSA/RSA-AES128-GCM-SHA256
with X25519, to every terminator); BENCH_NEWCONN=short runs only TLS 1.3 ECDSA with and without
NODELAY and TLS 1.3 RSA with NODELAY. Then every terminator is restarted with NC_WORKERS workers
on both CPUs for TLS 1.3 ECDSA with NODELAY (the nc2_ rows and the scaling line of latest.md).

Environment:
  BENCH_QUICK=1            short smoke run (one repetition, 1 s timed runs, 500 idle connections)
  BENCH_ONLY=G[,G...]      only these figure groups: mem, bulk, hs, lat, newconn (default: all);
                           latest.md then holds only their rows, e.g.
                           BENCH_QUICK=1 BENCH_ONLY=newconn make B=build/bench bench
  BENCH_NEWCONN=short      the newconn figure's three main variants only (see above)
"""
import json
import os
import platform
import resource
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import time

TOP = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BUILD = os.path.abspath(sys.argv[1] if len(sys.argv) > 1 else os.path.join(TOP, "build"))
WORK = os.path.join(BUILD, "bench")
RESULTS = os.path.join(TOP, "bench", "results")
QUICK = os.environ.get("BENCH_QUICK") == "1"

REPS = 1 if QUICK else 3
SECS = 1 if QUICK else 4          # counted seconds per timed run (plus 1 s warm-up)
# Idle established connections: 10,000, or as many as the descriptor limit allows (a terminator
# holds two per connection, client and backend leg, and raising the hard limit needs
# CAP_SYS_RESOURCE, which a container may lack).
_NOFILE = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
if _NOFILE == resource.RLIM_INFINITY:
    _NOFILE = 1 << 20
MAXCONN = (_NOFILE - 100) // 2  # connections each terminator is configured to take
IDLE_N = 500 if QUICK else min(10000, (_NOFILE - 100) // 2 // 100 * 100)
IDLE_SETTLE = 3.0                 # seconds the connections stay idle before the RSS is read
HS_CONNS = 16                     # handshakes in flight
LAT_CONNS, LAT_RATE = 16, 2000    # 1 KiB request/response: connections, requests/s in all
CPU_TERM, CPU_LOAD = "1", "0"
HZ = os.sysconf("SC_CLK_TCK")
CIPHER = "TLS_AES_128_GCM_SHA256"
CIPHERS12 = "ECDHE-ECDSA-AES128-GCM-SHA256:ECDHE-RSA-AES128-GCM-SHA256"  # TLS 1.2 listeners only

GROUPS = ("mem", "bulk", "hs", "lat", "newconn")
ONLY = [g for g in os.environ.get("BENCH_ONLY", ",".join(GROUPS)).replace(" ", "").split(",") if g]
if not ONLY or set(ONLY) - set(GROUPS):
    sys.exit(f"bench: BENCH_ONLY={os.environ.get('BENCH_ONLY')}: groups are {', '.join(GROUPS)}")

# New connection per request: (TLS version, certificate, client TCP_NODELAY) variants.
NC_CONNS = 16                     # requests (connections) in flight
NC_SECS = 1 if QUICK else 2       # counted seconds per run, after NC_WARMUP_MS
NC_WARMUP_MS = 500
NC_MATRIX = [(v, k, nd) for v in ("1.3", "1.2") for k in ("ecdsa", "rsa") for nd in (True, False)]
NC_VARIANTS = NC_MATRIX if os.environ.get("BENCH_NEWCONN", "full") == "full" else \
    [("1.3", "ecdsa", True), ("1.3", "ecdsa", False), ("1.3", "rsa", True)]
# The same workload with 2 workers on both CPUs (SO_REUSEPORT listeners for ktlsd, threads for
# HAProxy, processes for nginx; stunnel has a thread per connection either way), for the
# per-worker scaling: TLS 1.3 ECDSA, NODELAY.
NC_MULTI = ("1.3", "ecdsa", True)
# The variant with a target (TLS 1.3 ECDSA, NODELAY) runs this many rounds per repetition.
NC_TARGET = ("1.3", "ecdsa", True)
NC_TARGET_ROUNDS = 1 if QUICK else 3
NC_WORKERS = 2
if "newconn" not in ONLY:
    NC_VARIANTS = []
# Listeners of every terminator: (name, certificate, TLS version). The TLS 1.2 ones exist only
# when a newconn variant needs them, so the other figures' configurations stay TLS 1.3 only.
LISTENERS = [("ecdsa", "ecdsa", "1.3"), ("rsa", "rsa", "1.3")]
if any(v == "1.2" for v, _k, _nd in NC_VARIANTS):
    LISTENERS += [("ecdsa12", "ecdsa", "1.2"), ("rsa12", "rsa", "1.2")]


def nc_listener(version, kind):
    return kind if version == "1.3" else kind + "12"


def nc_name(version, kind, nodelay):
    """Key suffix and label of a newconn variant: '13_ecdsa_nodelay', 'TLS 1.3 ECDSA, NODELAY'."""
    return (f"{version.replace('.', '')}_{kind}_{'nodelay' if nodelay else 'nagle'}",
            f"TLS {version} {kind.upper()}, {'NODELAY' if nodelay else 'Nagle'}")

TLSLOAD = os.path.join(BUILD, "bench", "tlsload")
SINKD = os.path.join(BUILD, "bench", "sinkd")


def log(msg):
    print(f"bench: {msg}", flush=True)


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_port(port, proc, what, timeout=10.0):
    end = time.time() + timeout
    while time.time() < end:
        if proc.poll() is not None:
            raise RuntimeError(f"{what} exited with {proc.returncode} while starting")
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
            return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError(f"{what} does not accept on port {port}")


def proc_tree(pid):
    """pid and all its descendants."""
    kids = {}
    for d in os.listdir("/proc"):
        if d.isdigit():
            try:
                with open(f"/proc/{d}/stat") as f:
                    ppid = int(f.read().rsplit(")", 1)[1].split()[1])
                kids.setdefault(ppid, []).append(int(d))
            except (OSError, IndexError, ValueError):
                pass
    out, todo = [], [pid]
    while todo:
        p = todo.pop()
        out.append(p)
        todo.extend(kids.get(p, []))
    return out


def rss_kib(pids):
    total = 0
    for p in pids:
        try:
            with open(f"/proc/{p}/status") as f:
                for line in f:
                    if line.startswith("VmRSS:"):
                        total += int(line.split()[1])
        except OSError:
            pass
    return total


def cpu_secs(pids):
    """utime + stime of the processes (all their threads), in seconds."""
    ticks = 0
    for p in pids:
        try:
            with open(f"/proc/{p}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
            ticks += int(fields[11]) + int(fields[12])
        except (OSError, IndexError):
            pass
    return ticks / HZ


def sh(cmd):
    return subprocess.run(cmd, shell=True, capture_output=True, text=True).stdout.strip()


# ---- certificates and terminators -------------------------------------------------------------

def make_certs():
    certs = {}
    for kind, alg in (("ecdsa", "-newkey ec -pkeyopt ec_paramgen_curve:P-256"),
                      ("rsa", "-newkey rsa:2048")):
        key, pem = os.path.join(WORK, f"{kind}.key"), os.path.join(WORK, f"{kind}.pem")
        subprocess.run(f"openssl req -x509 {alg} -nodes -keyout {key} -out {pem} -days 30 "
                       f"-subj /CN=bench.test -addext subjectAltName=DNS:bench.test",
                       shell=True, check=True, capture_output=True)
        both = os.path.join(WORK, f"{kind}-both.pem")  # HAProxy wants certificate + key in one
        with open(both, "w") as out:
            out.write(open(pem).read() + open(key).read())
        certs[kind] = (pem, key, both)
    return certs


class Terminator:
    name = "?"

    def __init__(self, certs, backend_port):
        self.certs = certs
        self.backend = backend_port
        self.ports = {name: free_port() for name, _kind, _version in LISTENERS}
        self.proc = None
        self.workers = 1  # worker threads or processes, pinned to CPU_TERM; more: all CPUs

    def cmd(self):
        raise NotImplementedError

    def start(self):
        self.write_config()
        self.err = open(os.path.join(WORK, f"{self.name}.log"), "a")
        cpus = CPU_TERM if self.workers == 1 else f"{CPU_LOAD},{CPU_TERM}"
        self.proc = subprocess.Popen(["taskset", "-c", cpus] + self.cmd(), cwd=WORK,
                                     stdin=subprocess.DEVNULL, stdout=self.err, stderr=self.err)
        for kind in self.ports:
            wait_port(self.ports[kind], self.proc, self.name)
        time.sleep(0.3)

    def stop(self):
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                for p in reversed(proc_tree(self.proc.pid)):
                    try:
                        os.kill(p, signal.SIGKILL)
                    except OSError:
                        pass
                self.proc.wait()
        self.proc = None
        self.err.close()

    def pids(self):
        return proc_tree(self.proc.pid)

    def path(self, ext):
        return os.path.join(WORK, f"{self.name}.{ext}")


class Ktlsd(Terminator):
    name = "ktlsd"

    def write_config(self):
        self.sock = self.path("sock")
        cfg = {
            "workers": self.workers,
            "listeners": [{"name": name, "bind": f"127.0.0.1:{self.ports[name]}",
                           "certificates": [kind],
                           "security_policy": "bench" if version == "1.3" else "bench12",
                           "backend": "sink", "max_connections": MAXCONN}
                          for name, kind, version in LISTENERS],
            "certificates": {kind: {"cert": c[0], "key": c[1]} for kind, c in self.certs.items()},
            "security_policies": {"bench": {"versions": ["TLSv1.3"], "ciphersuites": [CIPHER],
                                            "groups": ["X25519"]}},
            "backends": {"sink": {"servers": [f"127.0.0.1:{self.backend}"]}},
            "control": {"socket": self.sock},
            # every client here is 127.0.0.1: no per-source caps (the peers have none either)
            "limits": {"per_source": {"max_handshakes": 0, "max_connections": 0}},
        }
        if any(version == "1.2" for _n, _k, version in LISTENERS):
            cfg["security_policies"]["bench12"] = {"versions": ["TLSv1.2"],
                                                   "ciphers": CIPHERS12.split(":"),
                                                   "groups": ["X25519"]}
        with open(self.path("json"), "w") as f:
            json.dump(cfg, f, indent=1)

    def cmd(self):
        return [os.path.join(BUILD, "ktlsd"), "-f", "-l", "warn", "-c", self.path("json")]

    def tiers(self):
        """Connections served so far by datapath tier, from the control socket."""
        out = sh(f"{os.path.join(BUILD, 'ktlsctl')} -s {self.sock} -j stats")
        tiers = {}

        def walk(node):
            if isinstance(node, dict):
                for k, v in node.items():
                    if k == "total_by_tier" and isinstance(v, dict):
                        for tier, n in v.items():
                            tiers[tier] = tiers.get(tier, 0) + n
                    else:
                        walk(v)
            elif isinstance(node, list):
                for v in node:
                    walk(v)
        try:
            walk(json.loads(out))
        except ValueError:
            pass
        return {t: n for t, n in tiers.items() if n}

    def version(self):
        return sh(f"{os.path.join(BUILD, 'ktlsd')} -V").splitlines()[0] + \
            f" (git {sh(f'git -C {TOP} rev-parse --short HEAD')})"


class Haproxy(Terminator):
    name = "haproxy"

    def write_config(self):
        tls12 = " ssl-min-ver TLSv1.2 ssl-max-ver TLSv1.2 no-tls-tickets ciphers " + CIPHERS12
        fronts = "".join(f"""
frontend {name}
    bind 127.0.0.1:{self.ports[name]} ssl crt {self.certs[kind][2]}{tls12 if version == "1.2" else ""}
    default_backend sink
""" for name, kind, version in LISTENERS)
        with open(self.path("cfg"), "w") as f:
            f.write(f"""global
    nbthread {self.workers}
    maxconn {MAXCONN}
    tune.ssl.cachesize 0
    ssl-default-bind-options ssl-min-ver TLSv1.3 no-tls-tickets
    ssl-default-bind-ciphersuites {CIPHER}
    ssl-default-bind-curves X25519
defaults
    mode tcp
    maxconn {MAXCONN}
    timeout connect 3s
    timeout client 300s
    timeout server 300s
{fronts}
backend sink
    server s1 127.0.0.1:{self.backend}
""")

    def cmd(self):
        return ["haproxy", "-db", "-f", self.path("cfg")]

    def version(self):
        return sh("haproxy -v").splitlines()[0]


class Nginx(Terminator):
    name = "nginx"

    def write_config(self):
        tls12 = f"""
        ssl_protocols TLSv1.2;
        ssl_ciphers {CIPHERS12};"""
        servers = "".join(f"""
    server {{
        listen 127.0.0.1:{self.ports[name]} ssl;
        ssl_certificate {self.certs[kind][0]};
        ssl_certificate_key {self.certs[kind][1]};{tls12 if version == "1.2" else ""}
        proxy_pass 127.0.0.1:{self.backend};
    }}
""" for name, kind, version in LISTENERS)
        with open(self.path("conf"), "w") as f:
            f.write(f"""load_module /usr/lib/nginx/modules/ngx_stream_module.so;
daemon off;
master_process on;
worker_processes {self.workers};
worker_rlimit_nofile {_NOFILE};
pid {self.path("pid")};
error_log {self.path("err")} error;
events {{ worker_connections {MAXCONN * 2}; }}
stream {{
    ssl_protocols TLSv1.3;
    ssl_conf_command Ciphersuites {CIPHER};
    ssl_ecdh_curve X25519;
    ssl_session_tickets off;
    ssl_session_cache off;
    tcp_nodelay on;
{servers}}}
""")

    def cmd(self):
        return ["nginx", "-e", self.path("err"), "-p", WORK, "-c", self.path("conf")]

    def version(self):
        return sh("nginx -v 2>&1")


class Stunnel(Terminator):
    name = "stunnel"

    def write_config(self):
        tls12 = f"sslVersionMin = TLSv1.2\nsslVersionMax = TLSv1.2\nciphers = {CIPHERS12}"
        svcs = "".join(f"""
[{name}]
accept = 127.0.0.1:{self.ports[name]}
connect = 127.0.0.1:{self.backend}
cert = {self.certs[kind][0]}
key = {self.certs[kind][1]}
{"sslVersionMin = TLSv1.3" if version == "1.3" else tls12}
ciphersuites = {CIPHER}
curves = X25519
options = NO_TICKET
sessionCacheSize = 1
""" for name, kind, version in LISTENERS)
        with open(self.path("conf"), "w") as f:
            f.write(f"""foreground = yes
syslog = no
debug = 3
output = {self.path("out")}
socket = l:TCP_NODELAY=1
socket = r:TCP_NODELAY=1
{svcs}""")

    def cmd(self):
        return ["stunnel4", self.path("conf")]

    def version(self):
        return sh("stunnel4 -version 2>&1 | grep -m1 '^stunnel'")


# ---- the load ---------------------------------------------------------------------------------

def tlsload(*args, timeout=None):
    cmd = ["taskset", "-c", CPU_LOAD, TLSLOAD] + [str(a) for a in args]
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout or SECS + 60)
    out = dict(kv.split("=", 1) for kv in r.stdout.split() if "=" in kv)
    if r.returncode != 0 or not out:
        raise RuntimeError(f"{' '.join(cmd)}: exit {r.returncode}: {r.stderr.strip()}")
    return {k: float(v) for k, v in out.items()}


def bulk(t, direction, conns):
    pids = t.pids()
    c0 = cpu_secs(pids)
    r = tlsload(direction, f"127.0.0.1:{t.ports['ecdsa']}", "-c", conns, "-t", SECS)
    cpu = cpu_secs(pids) - c0
    return {"MBps": r["bps"] / 1e6, "cpu_per_GiB": cpu / (r["total"] / 2**30),
            "errors": r["errors"]}


def handshakes(t, kind):
    """Full handshakes per second per core: the client shares the other core with the backend
    and saturates before a terminator does, so the figure is handshakes completed per CPU
    second the terminator used (its whole run, warm-up included, against all handshakes)."""
    pids = t.pids()
    c0 = cpu_secs(pids)
    r = tlsload("hs", f"127.0.0.1:{t.ports[kind]}", "-c", HS_CONNS, "-t", SECS)
    cpu = cpu_secs(pids) - c0
    return {"per_core": r["total"] / max(cpu, 1 / HZ), "rate": r["rate"], "errors": r["errors"]}


def latency(t):
    r = tlsload("lat", f"127.0.0.1:{t.ports['ecdsa']}", "-c", LAT_CONNS, "-t", SECS,
                "-r", LAT_RATE)
    return {"p50_ms": r["p50_us"] / 1000, "p99_ms": r["p99_us"] / 1000, "errors": r["errors"]}


def newconn(t, version, kind, nodelay):
    """A new connection per request, NC_CONNS in flight: requests/s, the terminator's CPU per
    request (its whole run, warm-up included, against all requests completed) and the median
    time from connect to the response read."""
    pids = t.pids()
    c0 = cpu_secs(pids)
    r = tlsload("req", f"127.0.0.1:{t.ports[nc_listener(version, kind)]}", "-c", NC_CONNS,
                "-t", NC_SECS, "-w", NC_WARMUP_MS, "-V", version, *([] if nodelay else ["-N"]),
                timeout=NC_SECS + 30)
    cpu = cpu_secs(pids) - c0
    return {"rps": r["rate"], "cpu_ms": 1000 * cpu / max(r["total"], 1),
            "p50_ms": r["p50_us"] / 1000, "short": r["short"], "errors": r["errors"]}


def idle_memory(t):
    """RSS per idle established TLS connection: the terminator is started afresh, IDLE_N
    connections are opened (one byte round trip each, so the backend leg exists too) and the RSS
    of all its processes is compared with the RSS before."""
    t.start()
    try:
        pids = t.pids()
        base = rss_kib(pids)
        cmd = ["taskset", "-c", CPU_LOAD, TLSLOAD, "idle", f"127.0.0.1:{t.ports['ecdsa']}",
               "-n", str(IDLE_N)]
        p = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        line = p.stdout.readline().split()
        time.sleep(IDLE_SETTLE)
        pids = t.pids()
        full = rss_kib(pids)
        p.stdin.close()
        p.wait(60)
        ready = int(line[1]) if len(line) > 1 and line[0] == "ready" else 0
        errors = int(line[2].split("=")[1]) if len(line) > 2 else IDLE_N
        return {"KiB": (full - base) / max(ready, 1), "ready": ready, "errors": errors}
    finally:
        t.stop()


# ---- figures ----------------------------------------------------------------------------------

# (key, title, unit, higher is better, group)
FIGURES = [
    ("up1", "bulk client→server, 1 connection", "MB/s", True, "bulk"),
    ("down1", "bulk server→client, 1 connection", "MB/s", True, "bulk"),
    ("up64", "bulk client→server, 64 connections", "MB/s", True, "bulk"),
    ("down64", "bulk server→client, 64 connections", "MB/s", True, "bulk"),
    ("hs_ecdsa", "full handshakes/s per core, ECDSA P-256", "/CPU-s", True, "hs"),
    ("hs_rsa", "full handshakes/s per core, RSA-2048", "/CPU-s", True, "hs"),
    ("hsrate_ecdsa", "  handshakes/s reached (client-bound), ECDSA", "/s", True, "hs"),
    ("hsrate_rsa", "  handshakes/s reached (client-bound), RSA", "/s", True, "hs"),
    ("p50", f"latency p50, 1 KiB/1 KiB at {LAT_RATE} req/s", "ms", False, "lat"),
    ("p99", f"latency p99, 1 KiB/1 KiB at {LAT_RATE} req/s", "ms", False, "lat"),
    ("mem", f"RSS per idle TLS connection at {IDLE_N} connections", "KiB", False, "mem"),
    ("cpu_up1", "CPU per GiB forwarded, client→server, 1 conn", "s/GiB", False, "bulk"),
    ("cpu_down1", "CPU per GiB forwarded, server→client, 1 conn", "s/GiB", False, "bulk"),
    ("cpu_up64", "CPU per GiB forwarded, client→server, 64 conns", "s/GiB", False, "bulk"),
    ("cpu_down64", "CPU per GiB forwarded, server→client, 64 conns", "s/GiB", False, "bulk"),
]
# New connection per request: requests/s, then CPU per request, then time per request, for each
# variant (nc_*, nccpu_*, ncp50_* keys; e.g. nc_13_ecdsa_nagle).
FIGURES += [(f"nc_{nc_name(*v)[0]}",
             f"new connection per request, {nc_name(*v)[1]}: requests/s, {NC_CONNS} in flight",
             "/s", True, "newconn") for v in NC_VARIANTS]
FIGURES += [(f"nccpu_{nc_name(*v)[0]}", f"  CPU per new-connection request, {nc_name(*v)[1]}",
             "ms", False, "newconn") for v in NC_VARIANTS]
FIGURES += [(f"ncp50_{nc_name(*v)[0]}", f"  time per new-connection request p50, {nc_name(*v)[1]}",
             "ms", False, "newconn") for v in NC_VARIANTS]
FIGURES += [(f"nc2_{nc_name(*NC_MULTI)[0]}",
             f"new connection per request, {nc_name(*NC_MULTI)[1]}, {NC_WORKERS} workers on "
             "both CPUs: requests/s", "/s", True, "newconn"),
            (f"nccpu2_{nc_name(*NC_MULTI)[0]}",
             f"  CPU per new-connection request, {nc_name(*NC_MULTI)[1]}, {NC_WORKERS} workers",
             "ms", False, "newconn")]
FIGURES = [f for f in FIGURES if f[4] in ONLY]


def rotated(terms, k):
    """The terminators in turn, starting with the k-th (mod their number)."""
    k %= len(terms)
    return terms[k:] + terms[:k]


def newconn_rep(terms, rep, add, shorts):
    """One repetition of the newconn figure: for each variant the terminators take turns, so a
    noisy stretch of the host falls on all of them; NC_TARGET runs NC_TARGET_ROUNDS rounds. The
    order rotates with every round, so no terminator always runs first."""
    for v in NC_VARIANTS:
        key, label = nc_name(*v)
        for rnd in range(NC_TARGET_ROUNDS if v == NC_TARGET else 1):
            done = []
            for t in rotated(terms, rep + rnd):
                r = newconn(t, *v)
                add(f"nc_{key}", t, r["rps"], r["errors"])
                add(f"nccpu_{key}", t, r["cpu_ms"])
                add(f"ncp50_{key}", t, r["p50_ms"])
                shorts[t.name] += int(r["short"])
                done.append(f"{t.name} {r['rps']:.0f} req/s {r['cpu_ms']:.3f} ms "
                            f"{r['p50_ms']:.2f} ms p50" +
                            (f" ({int(r['errors'])} errors, {int(r['short'])} short)"
                             if r["errors"] else ""))
            log(f"  {label}: " + "; ".join(done))


def run_all(terms):
    samples = {f[0]: {t.name: [] for t in terms} for f in FIGURES}
    errors = {t.name: 0 for t in terms}
    shorts = {t.name: 0 for t in terms}   # newconn: responses short or wrong (within errors)
    nc_secs = 0.0                          # wall time of the newconn figure

    def add(key, t, value, errs=0):
        samples[key][t.name].append(value)
        errors[t.name] += int(errs)

    for rep in range(REPS if "mem" in ONLY else 0):
        log(f"repetition {rep + 1}/{REPS}: idle memory ({IDLE_N} connections)")
        for t in terms:
            r = idle_memory(t)
            add("mem", t, r["KiB"], r["errors"])
            log(f"  {t.name}: {r['KiB']:.1f} KiB/conn ({r['ready']} ready)")
    for t in terms:
        t.start()
    for rep in range(REPS):
        groups = [g for g in ("bulk", "hs", "lat", "newconn") if g in ONLY]
        if not groups:
            break
        log(f"repetition {rep + 1}/{REPS}: {', '.join(groups)}")
        for t in terms:
            done = []
            if "bulk" in ONLY:
                for direction in ("up", "down"):
                    for conns in (1, 64):
                        r = bulk(t, direction, conns)
                        add(f"{direction}{conns}", t, r["MBps"], r["errors"])
                        add(f"cpu_{direction}{conns}", t, r["cpu_per_GiB"])
                done.append(f"up64 {samples['up64'][t.name][-1]:.0f} MB/s")
            if "hs" in ONLY:
                for kind in ("ecdsa", "rsa"):
                    r = handshakes(t, kind)
                    add(f"hs_{kind}", t, r["per_core"], r["errors"])
                    add(f"hsrate_{kind}", t, r["rate"])
                done.append(f"hs_ecdsa {samples['hs_ecdsa'][t.name][-1]:.0f}/s")
            if "lat" in ONLY:
                r = latency(t)
                add("p50", t, r["p50_ms"], r["errors"])
                add("p99", t, r["p99_ms"])
                done.append(f"p99 {samples['p99'][t.name][-1]:.2f} ms")
            if done:
                log(f"  {t.name}: " + "; ".join(done))
        if "newconn" in ONLY:
            t0 = time.time()
            newconn_rep(terms, rep, add, shorts)
            nc_secs += time.time() - t0
    if NC_VARIANTS:
        t0 = time.time()
        key = nc_name(*NC_MULTI)[0]
        for t in terms:
            if isinstance(t, Ktlsd):
                t.saved_tiers = t.tiers()  # the restarted process counts from zero
            t.stop()
            t.workers = NC_WORKERS
            t.start()
        for rep in range(REPS):
            log(f"repetition {rep + 1}/{REPS}: newconn, {NC_WORKERS} workers")
            for t in rotated(terms, rep):
                r = newconn(t, *NC_MULTI)
                add(f"nc2_{key}", t, r["rps"], r["errors"])
                add(f"nccpu2_{key}", t, r["cpu_ms"])
                shorts[t.name] += int(r["short"])
                log(f"  {t.name}: {r['rps']:.0f} req/s {r['cpu_ms']:.3f} ms CPU")
        nc_secs += time.time() - t0
        log(f"newconn figure: {nc_secs:.0f} s")
    return samples, errors, shorts, nc_secs


# ---- report -----------------------------------------------------------------------------------

def machine():
    cpu = sh("lscpu | sed -n 's/^Model name: *//p'") or platform.processor()
    return {
        "cpu": f"{cpu}, {os.cpu_count()} CPUs",
        "kernel": platform.release(),
        "os": sh(". /etc/os-release && echo $PRETTY_NAME"),
        "openssl": sh("openssl version"),
    }


def fmt(v):
    return f"{v:.3f}" if v < 1 else f"{v:.2f}" if v < 10 else f"{v:.1f}" if v < 100 else f"{v:.0f}"


def target_check(key, ratios):
    """The issue's targets, on the userspace tier: text for the table."""
    hp = ratios.get("haproxy")
    if hp is None:
        return ""
    if key.startswith(("up", "down", "hs_", "cpu_")):
        if key.startswith("cpu_"):  # throughput per terminator core: s/GiB, lower is better
            ok = hp <= 1 / 1.2 and ratios["nginx"] < 1 and ratios["stunnel"] < 1
            return "met" if ok else "missed (need ≤0.833× HAProxy, below nginx/stunnel)"
        ok = hp >= 1.2 and ratios["nginx"] > 1 and ratios["stunnel"] > 1
        return "met" if ok else f"missed (need ≥1.2× HAProxy, ahead of nginx/stunnel)"
    if key == "mem":
        return "met" if hp <= 1 / 3 else f"missed (need ≤0.333× HAProxy)"
    if key == "p99":
        return "met" if hp <= 1 else "missed (need ≤1× HAProxy)"
    if key == f"nccpu_{nc_name(*NC_TARGET)[0]}":
        ok = hp <= 0.8 and ratios["nginx"] < 1
        return "met" if ok else "missed (need ≤0.8× HAProxy, below nginx)"
    return ""


def newconn_text(names, med, shorts, nc_secs):
    """The newconn figure's paragraph for latest.md."""
    out = [
        "",
        "**New connection per request** (the `new connection per request` rows; bench/run.py's "
        "docstring). The load balancer's commonest work: each of "
        f"{NC_CONNS} clients in flight connects, does a full handshake, writes its request "
        "(1 KiB, sinkd's echo) right after SSL_connect returns, reads and checks the 1 KiB "
        "response, sends close_notify and closes, and opens the next connection; the terminator "
        "connects the backend for every request. Requests/s are what the client reached (it "
        f"shares CPU {CPU_LOAD} with the backend, so with NODELAY every terminator may be "
        "client-bound, as in the handshakes/s reached rows); CPU per request is the "
        "terminator's own, from /proc, over the whole run against every request completed; the "
        "time per request runs from connect() to the last response byte. `Nagle` is a client "
        "that leaves Nagle on (no TCP_NODELAY), as many clients do: its request, written just "
        "after its Finished, leaves only once the Finished is ACKed, so a server that sends "
        "nothing after the client's Finished (TLS 1.3 without session tickets) holds every "
        "request for its delayed ACK, about 40 ms. "
        f"Runs of {NC_SECS} s after {NC_WARMUP_MS} ms warm-up, time-bounded whatever the rate; "
        f"this figure took {nc_secs:.0f} s of this run.",
    ]
    for v in NC_VARIANTS:
        key, label = nc_name(*v)
        if not v[2] and med.get(f"ncp50_{key}"):
            row = med[f"ncp50_{key}"]
            out[-1] += (f" {label}: " + ", ".join(f"{n} {fmt(row[n])} ms" for n in names if n in row)
                        + " per request (p50).")
    key = nc_name(*NC_MULTI)[0]
    one, two = med.get(f"nc_{key}", {}), med.get(f"nc2_{key}", {})
    if one and two:
        out[-1] += (f" With {NC_WORKERS} workers on both CPUs ({nc_name(*NC_MULTI)[1]}; the client "
                    f"and the backend then share the terminator's CPUs), requests/s against one "
                    "worker: " + ", ".join(f"{n} {two[n] / one[n]:.2f}×" for n in names
                                          if one.get(n) and two.get(n)) + ".")
    out[-1] += (" Responses short or wrong (counted in the failed connections below): " +
                ", ".join(f"{n} {shorts[n]}" for n in names) + ".")
    return out


def paired_ratio(per, peer):
    """ktlsd ÷ peer: the median of the ratios within each repetition (the terminators ran in
    turn, so a slow stretch of the host weighs on both sides of one ratio), or the ratio of the
    medians when the sample lists do not pair up (a run that failed)."""
    k, p = per["ktlsd"], per[peer]
    if len(k) == len(p) and all(p):
        return statistics.median(a / b for a, b in zip(k, p))
    return statistics.median(k) / statistics.median(p)


def report(terms, samples, errors, shorts, nc_secs, versions, tier, started, elapsed):
    names = [t.name for t in terms]
    peers = [n for n in names if n != "ktlsd"]
    med = {k: {n: statistics.median(v) for n, v in per.items() if v} for k, per in samples.items()}
    m = machine()
    lines = [
        "# ktlsd benchmark results",
        "",
        f"Generated by `make bench{' BENCH_QUICK=1' if QUICK else ''}"
        f"{' BENCH_ONLY=' + ','.join(ONLY) if set(ONLY) != set(GROUPS) else ''}"
        f"{' BENCH_NEWCONN=short' if NC_VARIANTS and NC_VARIANTS != NC_MATRIX else ''}` on {started} "
        f"in {elapsed / 60:.1f} min. Medians of {REPS} repetition(s)"
        f"{f' ({REPS * NC_TARGET_ROUNDS} rounds for {nc_name(*NC_TARGET)[1]})' if NC_VARIANTS else ''}"
        "; ratio = the median, over the repetitions, of "
        "ktlsd ÷ peer within one repetition, the terminators taking turns (for the figures "
        "where lower is better, a ratio below 1 means ktlsd is better).",
        "",
        f"- machine: {m['cpu']}; {m['os']}; kernel {m['kernel']}; {m['openssl']}",
        "- " + "; ".join(f"{n}: {versions[n]}" for n in names),
        f"- ktlsd datapath tier of every figure: **{tier}** (connections by tier over the run, "
        "from `ktlsctl stats`; this kernel has no kTLS, so this is the userspace tier)",
        f"- settings, all terminators: 1 worker (thread or process) pinned to CPU {CPU_TERM}; "
        f"client (bench/tlsload.c) and backend (bench/sinkd.c) pinned to CPU {CPU_LOAD}; "
        f"TLSv1.3 {CIPHER}, X25519, no session tickets or cache, loopback only; timed runs "
        f"{SECS} s after 1 s of warm-up; {HS_CONNS} handshakes in flight; latency with "
        f"{LAT_CONNS} connections at {LAT_RATE} requests/s in all, measured from the scheduled "
        "send time",
        "- the handshake client (connect, handshake, close_notify, close) sends no data: HAProxy "
        "and ktlsd then do not connect the backend (ktlsd's ended-before-forwarding count above), "
        "nginx and stunnel do (bench/results/profile.md)",
        *([f"- new connection per request: {NC_CONNS} in flight, {NC_SECS} s timed runs after "
           f"{NC_WARMUP_MS} ms of warm-up, 1 KiB request and response, the client's TCP_NODELAY "
           "on or off (Nagle) as the row says" +
           (f"; the TLS 1.2 rows on extra TLS 1.2-only listeners ({CIPHERS12}, X25519, no "
            "tickets or cache)" if any(v[0] == "1.2" for v in NC_VARIANTS) else "")]
          if NC_VARIANTS else []),
        *([f"- idle connections: {IDLE_N}, not 10,000: the descriptor limit here ({_NOFILE}) "
           "allows no more with two per connection in the terminator"]
          if IDLE_N < 10000 and not QUICK else []),
        "- other processes may have been running on this 2-core machine during the run: the "
        "ratios, taken from one invocation with the terminators taking turns, are what count",
        "",
        "| figure | unit | " + " | ".join(names) + " | " +
        " | ".join(f"ktlsd ÷ {p}" for p in peers) + " | target |",
        "|---|---|" + "---:|" * (len(names) + len(peers)) + "---|",
    ]
    for key, title, unit, _higher, _group in FIGURES:
        row = med[key]
        ratios = {p: paired_ratio(samples[key], p) for p in peers if row.get(p)}
        lines.append(f"| {title} | {unit} | " + " | ".join(fmt(row[n]) for n in names) + " | " +
                     " | ".join(f"{ratios[p]:.2f}" if p in ratios else "-" for p in peers) +
                     f" | {target_check(key, ratios)} |")
    if NC_VARIANTS:
        lines += newconn_text(names, med, shorts, nc_secs)
    lines += ["", "Failed connections over the run: " +
              ", ".join(f"{n} {errors[n]}" for n in names) + ".", "",
              "Plots: " + ", ".join(f"[{p}]({p}.png)" for p in plot_groups(med)),
              "", "## All samples", "", "```"]
    for key, _title, unit, _h, _g in FIGURES:
        lines.append(f"{key:9} " + "  ".join(
            f"{n}=[{', '.join(fmt(v) for v in samples[key][n])}]" for n in names))
    lines += ["```", ""]
    os.makedirs(RESULTS, exist_ok=True)
    with open(os.path.join(RESULTS, "latest.md"), "w") as f:
        f.write("\n".join(lines))
    with open(os.path.join(RESULTS, "latest.json"), "w") as f:
        json.dump({"medians": med, "samples": samples, "machine": m, "versions": versions,
                   "tier": tier, "quick": QUICK, "only": ONLY,
                   "newconn": {"conns": NC_CONNS, "secs": NC_SECS, "warmup_ms": NC_WARMUP_MS,
                               "variants": [dict(zip(("key", "version", "cert", "nodelay"),
                                                     (nc_name(*v)[0],) + v))
                                            for v in NC_VARIANTS],
                               "short": shorts, "wall_s": round(nc_secs, 1)}}, f, indent=1)
    plot(names, med)


def plot_groups(med):
    """The plots (name: keys, y label, x labels) whose figures were all measured."""
    groups = {
        "throughput": (["up1", "down1", "up64", "down64"], "MB/s (higher is better)",
                       ["c→s 1 conn", "s→c 1 conn", "c→s 64 conns", "s→c 64 conns"]),
        "handshakes": (["hs_ecdsa", "hs_rsa"], "full handshakes/s per core (higher is better)",
                       ["ECDSA P-256", "RSA-2048"]),
        "latency": (["p50", "p99"], f"ms at {LAT_RATE} req/s, 1 KiB/1 KiB (lower is better)",
                    ["p50", "p99"]),
        "memory": (["mem"], "KiB per idle TLS connection (lower is better)",
                   [f"{IDLE_N} idle connections"]),
        "cpu": (["cpu_up1", "cpu_down1", "cpu_up64", "cpu_down64"],
                "CPU s per GiB forwarded (lower is better)",
                ["c→s 1 conn", "s→c 1 conn", "c→s 64 conns", "s→c 64 conns"]),
        "newconn": ([f"nc_{nc_name(*v)[0]}" for v in NC_VARIANTS],
                    f"requests/s, new connection per request, {NC_CONNS} in flight "
                    "(higher is better)", [nc_name(*v)[1] for v in NC_VARIANTS]),
        "newconn_cpu": ([f"nccpu_{nc_name(*v)[0]}" for v in NC_VARIANTS],
                        "terminator CPU ms per new-connection request (lower is better)",
                        [nc_name(*v)[1] for v in NC_VARIANTS]),
    }
    return {name: g for name, g in groups.items()
            if g[0] and all(med.get(k) for k in g[0])}


def plot(names, med):
    groups = plot_groups(med)
    if not shutil.which("gnuplot"):
        log("gnuplot missing: no plots")
        return
    for name, (keys, ylabel, labels) in groups.items():
        dat = os.path.join(WORK, f"{name}.dat")
        with open(dat, "w") as f:
            f.write("group " + " ".join(names) + "\n")
            for key, label in zip(keys, labels):
                f.write(f'"{label}" ' + " ".join(f"{med[key][n]:.4f}" for n in names) + "\n")
        cols = " , ".join(f"'{dat}' using {i + 2}:xtic(1) title columnheader"
                          for i in range(len(names)))
        script = f"""set terminal pngcairo size 900,480 font ",11"
set output '{os.path.join(RESULTS, name + ".png")}'
set title 'ktlsd vs HAProxy, nginx, stunnel: {name}{" (BENCH_QUICK)" if QUICK else ""}'
set ylabel '{ylabel}'
set style data histograms
set style histogram clustered gap 1
set style fill solid 0.8 border -1
set key below horizontal
{"set xtics rotate by -15" if len(labels) > 4 else ""}
set grid ytics
set yrange [0:*]
plot {cols}
"""
        subprocess.run(["gnuplot"], input=script, text=True, check=True)


def main():
    for b in (TLSLOAD, SINKD, os.path.join(BUILD, "ktlsd")):
        if not os.access(b, os.X_OK):
            sys.exit(f"bench: {b} missing: run through `make bench`")
    os.makedirs(WORK, exist_ok=True)
    # 10,000 connections are 20,000+ descriptors in a terminator (client + backend legs).
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    want = 200000 if hard == resource.RLIM_INFINITY else hard
    try:
        resource.setrlimit(resource.RLIMIT_NOFILE, (200000, 200000))
    except (ValueError, OSError):
        resource.setrlimit(resource.RLIMIT_NOFILE, (want, hard))
    started = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
    t0 = time.time()
    certs = make_certs()
    bport = free_port()
    backend = subprocess.Popen(["taskset", "-c", CPU_LOAD, SINKD, str(bport)],
                               stdin=subprocess.DEVNULL)
    terms = [cls(certs, bport) for cls in (Ktlsd, Haproxy, Nginx, Stunnel)]
    try:
        wait_port(bport, backend, "sinkd")
        versions = {t.name: t.version() for t in terms}
        samples, errors, shorts, nc_secs = run_all(terms)
        tiers = terms[0].tiers()
        for k, v in getattr(terms[0], "saved_tiers", {}).items():
            tiers[k] = tiers.get(k, 0) + v
        # "none": connections that ended before forwarding: the handshake runs' clients, which
        # close before sending data (no backend connect), and handshakes cut at a run's end.
        early = tiers.pop("none", 0)
        tier = ", ".join(f"{k} ({v} connections)" for k, v in tiers.items()) or "unknown"
        if early:
            tier += f"; {early} ended before forwarding"
        if set(tiers) - {"userspace"}:
            log(f"ktlsd used tiers {tiers}")
    finally:
        for t in terms:
            if t.proc:
                t.stop()
        backend.terminate()
        backend.wait()
    report(terms, samples, errors, shorts, nc_secs, versions, tier, started, time.time() - t0)
    log(f"done in {(time.time() - t0) / 60:.1f} min: {os.path.join(RESULTS, 'latest.md')}")


if __name__ == "__main__":
    main()

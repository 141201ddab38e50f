"""Security policies through the real daemon, checked by an independent scanner (sslscan, from
Debian) and by openssl s_client: exactly the versions and ciphers of the AWS table, the server's
cipher order, no renegotiation, and no session resumption by default.

The expected sets below are transcribed from the cipher table of AWS's Network Load Balancer guide
(its create-tls-listener page; docs/configuration.md, "Security policies"; data/elb-policies.json's
source_notes name the page), not read from data/elb-policies.json.

Scanner: sslscan 2.0.7 (Debian), XML output on stdout. It links Debian's OpenSSL 3.0 but lowers its
own client context to security level 0, so it does negotiate TLS 1.0/1.1 and SHA-1 suites (the
test below would fail if it could not: the TLS-1-0 policy must show TLS 1.0 ciphers). It only
tries the ciphers its OpenSSL knows, so it cannot see DES-CBC3-SHA either way: for that cipher a
raw ClientHello offering only TLS_RSA_WITH_3DES_EDE_CBC_SHA (0x000A) is sent from Python and must
be refused, while the same raw probe with AES128-SHA (0x002F) gets a ServerHello.
"""
import os
import re
import shutil
import socket
import struct
import subprocess
import xml.etree.ElementTree as ET

import pytest

from conftest import https_get, tls_config

SSLSCAN = shutil.which("sslscan") or "/usr/bin/sslscan"
OPENSSL = shutil.which("openssl") or "/usr/bin/openssl"

# --- the AWS table, row by row: cipher -> the column headings it is marked in -----------------
# Columns: 2016-08 (= 2015-05, footnote *), FS-2018-06, TLS-1-2, TLS-1-2-Ext, TLS-1-1, TLS-1-0.
ALL6 = {"2016-08", "FS-2018-06", "TLS-1-2", "TLS-1-2-Ext", "TLS-1-1", "TLS-1-0"}
NO_TLS12 = ALL6 - {"TLS-1-2"}
NO_FS = ALL6 - {"FS-2018-06"}
NO_FS_TLS12 = ALL6 - {"FS-2018-06", "TLS-1-2"}
TABLE_CIPHERS = [  # in the table's row order
    ("ECDHE-ECDSA-AES128-GCM-SHA256", ALL6),
    ("ECDHE-RSA-AES128-GCM-SHA256", ALL6),
    ("ECDHE-ECDSA-AES128-SHA256", ALL6),
    ("ECDHE-RSA-AES128-SHA256", ALL6),
    ("ECDHE-ECDSA-AES128-SHA", NO_TLS12),
    ("ECDHE-RSA-AES128-SHA", NO_TLS12),
    ("ECDHE-ECDSA-AES256-GCM-SHA384", ALL6),
    ("ECDHE-RSA-AES256-GCM-SHA384", ALL6),
    ("ECDHE-ECDSA-AES256-SHA384", ALL6),
    ("ECDHE-RSA-AES256-SHA384", ALL6),
    ("ECDHE-RSA-AES256-SHA", NO_TLS12),
    ("ECDHE-ECDSA-AES256-SHA", NO_TLS12),
    ("AES128-GCM-SHA256", NO_FS),
    ("AES128-SHA256", NO_FS),
    ("AES128-SHA", NO_FS_TLS12),
    ("AES256-GCM-SHA384", NO_FS),
    ("AES256-SHA256", NO_FS),
    ("AES256-SHA", NO_FS_TLS12),
    ("DES-CBC3-SHA", {"TLS-1-0"}),
]
TABLE_VERSIONS = {
    "TLSv1.0": {"2016-08", "FS-2018-06", "TLS-1-0"},
    "TLSv1.1": {"2016-08", "FS-2018-06", "TLS-1-1", "TLS-1-0"},
    "TLSv1.2": ALL6,
}
POLICY_COLUMN = {
    "ELBSecurityPolicy-2016-08": "2016-08",
    "ELBSecurityPolicy-FS-2018-06": "FS-2018-06",
    "ELBSecurityPolicy-TLS-1-2-2017-01": "TLS-1-2",
    "ELBSecurityPolicy-TLS-1-2-Ext-2018-06": "TLS-1-2-Ext",
    "ELBSecurityPolicy-TLS-1-1-2017-01": "TLS-1-1",
    "ELBSecurityPolicy-2015-05": "2016-08",  # "identical" (footnote *)
    "ELBSecurityPolicy-TLS-1-0-2015-04": "TLS-1-0",
}
UNAVAILABLE = {"DES-CBC3-SHA"}  # Debian's OpenSSL is built without 3DES (docs/configuration.md)


def table_policy(column):
    versions = {v for v, cols in TABLE_VERSIONS.items() if column in cols}
    ciphers = [c for c, cols in TABLE_CIPHERS if column in cols]
    return versions, ciphers


def exists_before_tls12(cipher):
    """SHA-256/384 MACs and GCM are TLS 1.2 suites; the plain -SHA (CBC, SHA-1) ones are older."""
    return cipher.endswith("-SHA")


# The TLS 1.3 policies are not in that table; these are AWS's published sets (ALB/NLB guides).
TLS13_SUITES = {"TLS_AES_128_GCM_SHA256", "TLS_AES_256_GCM_SHA384", "TLS_CHACHA20_POLY1305_SHA256"}
TLS13_POLICIES = {
    "ELBSecurityPolicy-TLS13-1-2-2021-06": (
        {"TLSv1.2", "TLSv1.3"},
        ["ECDHE-ECDSA-AES128-GCM-SHA256", "ECDHE-RSA-AES128-GCM-SHA256",
         "ECDHE-ECDSA-AES128-SHA256", "ECDHE-RSA-AES128-SHA256",
         "ECDHE-ECDSA-AES256-GCM-SHA384", "ECDHE-RSA-AES256-GCM-SHA384",
         "ECDHE-ECDSA-AES256-SHA384", "ECDHE-RSA-AES256-SHA384"]),
    "ELBSecurityPolicy-TLS13-1-3-2021-06": ({"TLSv1.3"}, []),
}


def dual_cert_config(backend_addr, policy, **listener):
    """RSA first (the default for clients without SNI), ECDSA second; both are for localhost, so
    with SNI localhost the ECDSA one is chosen when the client can use it, else the RSA one."""
    cfg = tls_config([backend_addr], security_policy=policy, certificates=["rsa", "ec"],
                     **listener)
    cfg["certificates"] = {"rsa": {"cert": "server-rsa.chain.pem", "key": "server-rsa.key"},
                           "ec": {"cert": "server-ec.chain.pem", "key": "server-ec.key"}}
    return cfg


def sslscan(port):
    """Scan 127.0.0.1:port with SNI localhost; returns (enabled versions, {version: [ciphers]},
    {version: preferred cipher})."""
    r = subprocess.run([SSLSCAN, "--no-colour", "--sni-name=localhost", "--no-heartbleed",
                        "--no-compression", "--no-fallback", "--no-check-certificate",
                        "--xml=-", "127.0.0.1:%d" % port], capture_output=True, timeout=60)
    out = r.stdout.decode(errors="replace")
    assert r.returncode == 0, out + r.stderr.decode(errors="replace")
    xml = out[out.index("<?xml"):]
    root = ET.fromstring(xml)
    test = root.find("ssltest")
    assert test is not None, xml
    names = {("ssl", "2"): "SSLv2", ("ssl", "3"): "SSLv3", ("tls", "1.0"): "TLSv1.0",
             ("tls", "1.1"): "TLSv1.1", ("tls", "1.2"): "TLSv1.2", ("tls", "1.3"): "TLSv1.3"}
    protos = test.findall("protocol")
    assert len(protos) == 6, xml  # every version was probed
    versions = {names[(p.get("type"), p.get("version"))] for p in protos
                if p.get("enabled") == "1"}
    ciphers, preferred = {}, {}
    for c in test.findall("cipher"):
        v = c.get("sslversion")
        ciphers.setdefault(v, []).append(c.get("cipher"))
        if c.get("status") == "preferred":
            preferred[v] = c.get("cipher")
    return versions, ciphers, preferred


# --- a raw ClientHello, so that a cipher the client-side OpenSSL lacks can still be offered ------

def raw_hello(version, suites):
    """A minimal ClientHello (record version 0x0301) for version (0x0301..0x0303) offering only
    suites; with the extensions an RSA key exchange needs at TLS 1.2 (signature_algorithms) and
    server_name localhost."""
    def ext(t, data):
        return struct.pack("!HH", t, len(data)) + data
    host = b"localhost"
    sni = struct.pack("!HBH", len(host) + 3, 0, len(host)) + host
    sigalgs = struct.pack("!H", 8) + bytes.fromhex("0401050106010201")
    exts = ext(0, sni) + ext(13, sigalgs) + ext(0xff01, b"\x00")
    cs = b"".join(struct.pack("!H", s) for s in suites)
    body = (struct.pack("!H", version) + os.urandom(32) + b"\x00" +
            struct.pack("!H", len(cs)) + cs + b"\x01\x00" + struct.pack("!H", len(exts)) + exts)
    hs = b"\x01" + struct.pack("!I", len(body))[1:] + body
    return b"\x16\x03\x01" + struct.pack("!H", len(hs)) + hs


def raw_probe(port, version, suite):
    """Returns ("hello", chosen suite) for a ServerHello, ("alert", description) for an alert,
    ("closed", None) if the server just closed."""
    with socket.create_connection(("127.0.0.1", port), timeout=5) as s:
        s.sendall(raw_hello(version, [suite]))
        head = b""
        while len(head) < 5:
            chunk = s.recv(5 - len(head))
            if not chunk:
                return "closed", None
            head += chunk
        n = struct.unpack("!H", head[3:5])[0]
        rec = b""
        while len(rec) < n:
            chunk = s.recv(n - len(rec))
            if not chunk:
                break
            rec += chunk
    if head[0] == 21:
        return "alert", rec[1]
    assert head[0] == 22 and rec[0] == 2, (head, rec[:8])  # handshake, ServerHello
    sid_len = rec[4 + 2 + 32]
    off = 4 + 2 + 32 + 1 + sid_len
    return "hello", struct.unpack("!H", rec[off:off + 2])[0]


def s_client(port, *args, stdin=b"", timeout=15):
    r = subprocess.run([OPENSSL, "s_client", "-connect", "127.0.0.1:%d" % port,
                        "-servername", "localhost", *args], input=stdin,
                       capture_output=True, timeout=timeout)
    return r.returncode, r.stdout.decode(errors="replace") + r.stderr.decode(errors="replace")


REQUEST = b"GET / HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n"


# --- 1. the seven policies of the AWS table ----------------------------------------------------

@pytest.mark.parametrize("policy", list(POLICY_COLUMN))
def test_scanner_finds_exactly_the_aws_table(policy, backend, daemon_factory):
    versions, ciphers = table_policy(POLICY_COLUMN[policy])
    available = [c for c in ciphers if c not in UNAVAILABLE]
    d = daemon_factory(dual_cert_config(backend.addr, policy))
    found_versions, found, preferred = sslscan(d.ports[0])

    assert found_versions == versions, (policy, found_versions)
    assert "TLSv1.3" not in found and "SSLv3" not in found
    assert set(found) == versions, found
    for v in versions:
        want = available if v == "TLSv1.2" else [c for c in available if exists_before_tls12(c)]
        assert sorted(found[v]) == sorted(want), (policy, v, found[v])
        assert "DES-CBC3-SHA" not in found[v]
        # a client offering everything gets the policy's first cipher usable at that version
        assert preferred[v] == want[0], (policy, v, preferred)

    if "DES-CBC3-SHA" in ciphers:
        d.wait_log("DES-CBC3-SHA")
        line = [l for l in d.log().splitlines() if "DES-CBC3-SHA" in l][0]
        assert " warn " in line and policy in line, line
        assert "not available" in line, line
        for ver in (0x0301, 0x0303):
            # 3DES (0x000A) alone: refused (handshake_failure alert, 40); AES128-SHA: accepted
            kind, what = raw_probe(d.ports[0], ver, 0x000A)
            assert (kind, what) in (("alert", 40), ("closed", None)), (ver, kind, what)
            assert raw_probe(d.ports[0], ver, 0x002F) == ("hello", 0x002F), ver
    else:
        assert "DES-CBC3-SHA" not in d.log()
    assert https_get(d.ports[0])[0] == 200  # the daemon still serves after the scan


# --- 2. the server's order wins ----------------------------------------------------------------

@pytest.mark.parametrize("policy,offer,expected", [
    # policy order: ECDHE-ECDSA-AES128-SHA256 (3rd) before ECDHE-ECDSA-AES256-GCM-SHA384 (7th)
    ("ELBSecurityPolicy-2016-08", "ECDHE-ECDSA-AES256-GCM-SHA384:ECDHE-ECDSA-AES128-SHA256",
     "ECDHE-ECDSA-AES128-SHA256"),
    # AES128-GCM-SHA256 (13th) before AES256-SHA (18th); both RSA key exchange
    ("ELBSecurityPolicy-2016-08", "AES256-SHA:AES128-GCM-SHA256", "AES128-GCM-SHA256"),
    # ECDHE-RSA-AES128-GCM-SHA256 (2nd) before ECDHE-RSA-AES256-SHA384 (10th)
    ("ELBSecurityPolicy-TLS-1-2-2017-01", "ECDHE-RSA-AES256-SHA384:ECDHE-RSA-AES128-GCM-SHA256",
     "ECDHE-RSA-AES128-GCM-SHA256"),
    ("ELBSecurityPolicy-TLS-1-2-2017-01", "AES256-GCM-SHA384:AES128-SHA256", "AES128-SHA256"),
])
def test_server_cipher_order_wins(policy, offer, expected, backend, daemon_factory):
    column_ciphers = table_policy(POLICY_COLUMN[policy])[1]
    a, b = offer.split(":")
    assert column_ciphers.index(b) < column_ciphers.index(a)  # offered in reverse policy order
    d = daemon_factory(dual_cert_config(backend.addr, policy))
    rc, out = s_client(d.ports[0], "-tls1_2", "-cipher", offer)
    assert rc == 0, out
    assert "New, TLSv1.2, Cipher is %s\n" % expected in out, out


# --- 3. TLS 1.3 policies -----------------------------------------------------------------------

@pytest.mark.parametrize("policy", list(TLS13_POLICIES))
def test_scanner_finds_exactly_the_tls13_policy(policy, backend, daemon_factory):
    versions, tls12 = TLS13_POLICIES[policy]
    d = daemon_factory(dual_cert_config(backend.addr, policy))
    found_versions, found, preferred = sslscan(d.ports[0])
    assert found_versions == versions, found_versions
    assert set(found) == versions, found
    assert set(found["TLSv1.3"]) == TLS13_SUITES, found["TLSv1.3"]
    assert len(found["TLSv1.3"]) == 3
    if tls12:
        assert sorted(found["TLSv1.2"]) == sorted(tls12), found["TLSv1.2"]
        assert preferred["TLSv1.2"] == tls12[0]
    assert https_get(d.ports[0])[0] == 200


# --- 4. no renegotiation -----------------------------------------------------------------------

def test_client_renegotiation_is_refused(backend, daemon_factory):
    """OpenSSL's server with SSL_OP_NO_RENEGOTIATION answers the client's second ClientHello with
    a warning no_renegotiation alert instead of a ServerHello; OpenSSL's client then gives up with
    "no renegotiation" and sends a fatal handshake_failure, so the handshake never happens twice
    and the connection ends. ktlsd logs that alert as a TLS error from the client."""
    d = daemon_factory(dual_cert_config(backend.addr, "ELBSecurityPolicy-2016-08"))
    p = subprocess.Popen([OPENSSL, "s_client", "-tls1_2", "-connect", "127.0.0.1:%d" % d.ports[0],
                          "-servername", "localhost"], stdin=subprocess.PIPE,
                         stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    try:
        d.wait_log("result=ok")  # first handshake done
        p.stdin.write(b"R\n")
        p.stdin.flush()
        rc = p.wait(timeout=10)  # ends on its own: the connection is gone
    finally:
        if p.poll() is None:
            p.kill()
            p.wait()
    out = p.stdout.read().decode(errors="replace")
    assert "RENEGOTIATING" in out, out
    assert "no renegotiation" in out, out
    assert rc != 0
    assert out.count("New, TLSv1.2, Cipher is") == 1, out  # one handshake only
    # visible in the daemon's log: the connection ends with a TLS error, not a clean close
    d.wait_log("client attempted renegotiation: refused")
    d.wait_log("handshake failure")
    assert "client TLS error" in d.log()
    assert https_get(d.ports[0])[0] == 200  # and it keeps serving


# --- 5. no resumption by default ---------------------------------------------------------------

def resumption_attempt(port, version, sess):
    """First connection saving its session (-sess_out), second offering it (-sess_in); both send
    one request and stay until the server closes (-ign_eof), so a ticket would be read."""
    rc, first = s_client(port, version, "-msg", "-ign_eof", "-sess_out", str(sess), stdin=REQUEST)
    assert rc == 0, first
    assert "HTTP/1.1 200" in first, first[-2000:]
    second = None
    if sess.exists():
        rc, second = s_client(port, version, "-ign_eof", "-sess_in", str(sess), stdin=REQUEST)
        assert rc == 0, second
    return first, second


@pytest.mark.parametrize("version", ["-tls1_2", "-tls1_3"])
def test_resumption_off_by_default_gets_full_handshake(version, backend, daemon_factory, tmp_path):
    d = daemon_factory(dual_cert_config(backend.addr, "ELBSecurityPolicy-TLS13-1-2-2021-06"))
    v = "TLSv1.%s" % version[-1]
    first, second = resumption_attempt(d.ports[0], version, tmp_path / "sess.pem")
    assert "\nNew, %s" % v in first, first
    assert "NewSessionTicket" not in first, first  # no ticket in 1.2 or 1.3 (-msg shows them)
    assert "TLS session ticket" not in first, first
    if version == "-tls1_2":
        assert re.search(r"\n +Session-ID: *\n", first), first  # no session id either
    # OpenSSL's client only saves a resumable session: with no id and no ticket there is
    # nothing to save; if it did save one, offering it must still give a full handshake
    if second is not None:
        assert "\nNew, %s" % v in second and "Reused," not in second, second
    # s_client -reconnect: six more connections, each trying to resume the previous session
    rc, out = s_client(d.ports[0], version, "-reconnect", timeout=30)
    assert rc == 0, out
    assert "Reused," not in out, out
    assert out.count("New, %s" % v) >= 6, out


def test_resumption_control_when_enabled(backend, daemon_factory, tmp_path):
    """The method above does detect resumption: with session_resumption on, the same two
    s_client runs resume (TLS 1.3)."""
    d = daemon_factory(dual_cert_config(backend.addr, "ELBSecurityPolicy-TLS13-1-2-2021-06",
                                        session_resumption=True))
    first, second = resumption_attempt(d.ports[0], "-tls1_3", tmp_path / "sess.pem")
    assert "NewSessionTicket" in first, first
    assert second is not None and "\nReused, TLSv1.3" in second, second

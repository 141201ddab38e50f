"""Certificate selection and client certificates (docs/configuration-certificates.md), observed
from real clients: openssl s_client, gnutls-cli and Python's ssl, over TLS 1.2 and TLS 1.3."""
import json
import os
import socket
import ssl
import subprocess

import pytest

from conftest import FIX, KTLSD, free_port

CS = os.path.join(FIX, "certstore")


def cs(name):
    return os.path.join(CS, name)


def cert_entry(name):
    return {"cert": cs(name + ".chain.pem"), "key": cs(name + ".key")}


def subject_cn(pem_or_der, der=False):
    args = ["openssl", "x509", "-noout", "-subject", "-nameopt", "multiline"]
    if der:
        args += ["-inform", "DER"]
    out = subprocess.run(args, input=pem_or_der, capture_output=True, check=True).stdout
    for line in out.decode().splitlines():
        if "commonName" in line:
            return line.split("=", 1)[1].strip()
    return None


def listener(name, certs, port, **kw):
    l = {"name": name, "bind": "127.0.0.1:%d" % port, "certificates": certs, "backend": "app"}
    l.update(kw)
    return l


@pytest.fixture
def certd(backend, daemon_factory):
    names = ["cats", "dogs", "cats-ec", "www-rsa", "www-ec"] + ["many%02d" % i for i in range(1, 16)]
    ports = {k: free_port() for k in ("gcp", "pair", "ec-only", "many", "required", "optional")}
    cfg = {
        "listeners": [
            listener("gcp", ["cats", "dogs"], ports["gcp"]),
            # the default policy (TLS13-1-2-2021-06) has ECDSA and RSA suites for TLS 1.2
            listener("pair", ["www-rsa", "www-ec"], ports["pair"]),
            listener("ec-only", ["cats-ec"], ports["ec-only"]),
            listener("many", ["many%02d" % i for i in range(1, 16)], ports["many"]),
            listener("required", ["cats"], ports["required"],
                     client_auth={"mode": "required", "ca": "clients"}),
            listener("optional", ["cats"], ports["optional"],
                     client_auth={"mode": "optional", "ca": "clients"}),
        ],
        "certificates": {n: cert_entry(n) for n in names},
        "ca_certificates": {"clients": {"file": cs("ca.pem"), "crl": cs("ca.crl")}},
        "backends": {"app": {"servers": [backend.addr]}},
        "drain_timeout_ms": 1000,
    }
    cfg["certificates"]["cats"]["domains"] = ["cats.pets.example.com"]
    d = daemon_factory(cfg)
    d.p = ports
    return d


def s_client(port, *args, sni=None, stdin=b"Q\n"):
    cmd = ["openssl", "s_client", "-connect", "127.0.0.1:%d" % port, "-showcerts"]
    cmd += ["-servername", sni] if sni else ["-noservername"]
    r = subprocess.run(cmd + list(args), input=stdin, capture_output=True, timeout=20)
    return r


def served_cn(port, *args, sni=None):
    """The CN of the leaf certificate openssl s_client received."""
    r = s_client(port, *args, sni=sni)
    out = r.stdout.decode()
    assert "-----BEGIN CERTIFICATE-----" in out, r.stderr.decode()[-2000:]
    pem = out[out.index("-----BEGIN CERTIFICATE-----"):]
    pem = pem[:pem.index("-----END CERTIFICATE-----") + 25]
    return subject_cn(pem.encode())


VERSIONS = ["-tls1_2", "-tls1_3"]


@pytest.mark.parametrize("ver", VERSIONS)
def test_gcp_cats_and_dogs_example(certd, ver):
    port = certd.p["gcp"]
    assert served_cn(port, ver, sni="cats.pets.example.com") == "cats.pets.example.com"
    assert served_cn(port, ver, sni="dogs.pets.example.com") == "dogs.pets.example.com"
    # both match *.pets.example.com equally: config order decides (certificate A)
    assert served_cn(port, ver, sni="ferrets.pets.example.com") == "cats.pets.example.com"
    # case-insensitive, trailing dot ignored
    assert served_cn(port, ver, sni="DOGS.Pets.Example.COM.") == "dogs.pets.example.com"
    # no SNI, or an SNI nothing matches: the first certificate
    assert served_cn(port, ver) == "cats.pets.example.com"
    assert served_cn(port, ver, sni="unknown.example.net") == "cats.pets.example.com"
    certd.wait_log("listener=gcp sni=dogs.pets.example.com cert=dogs")


def test_python_ssl_sees_the_selected_certificate(certd):
    ctx = ssl.create_default_context(cafile=cs("ca.pem"))
    for sni, cn in [("dogs.pets.example.com", "dogs.pets.example.com"),
                    ("x.example.com", "cats.pets.example.com")]:
        with socket.create_connection(("127.0.0.1", certd.p["gcp"])) as raw:
            with ctx.wrap_socket(raw, server_hostname=sni) as s:
                assert subject_cn(s.getpeercert(binary_form=True), der=True) == cn


@pytest.mark.parametrize("ver", VERSIONS)
def test_ecdsa_preferred_when_client_allows_it(certd, ver):
    assert served_cn(certd.p["pair"], ver, sni="www.example.com") == "www.example.com"
    r = s_client(certd.p["pair"], ver, sni="www.example.com")
    assert b"Peer signature type: ECDSA" in r.stdout + r.stderr


@pytest.mark.parametrize("ver,args", [
    ("-tls1_3", ["-sigalgs", "rsa_pss_rsae_sha256:rsa_pkcs1_sha256"]),
    ("-tls1_2", ["-cipher", "ECDHE-RSA-AES128-GCM-SHA256"]),
    ("-tls1_2", ["-sigalgs", "RSA+SHA256"]),
])
def test_rsa_only_client_gets_the_rsa_certificate(certd, ver, args):
    r = s_client(certd.p["pair"], ver, *args, sni="www.example.com")
    out = (r.stdout + r.stderr).decode()
    assert "Peer signature type: RSA" in out, out[-2000:]


def test_gnutls_cli_priority_decides_key_type(certd):
    def key_type(priority):
        r = subprocess.run(["gnutls-cli", "--insecure", "--priority", priority, "-p",
                            str(certd.p["pair"]), "--sni-hostname", "www.example.com",
                            "127.0.0.1"], input=b"",
                           capture_output=True, timeout=20)
        out = (r.stdout + r.stderr).decode()
        assert "Handshake was completed" in out, out[-2000:]
        leaf = next(l for l in out.splitlines() if l.startswith(" - subject"))
        return "EC/ECDSA" if "EC/ECDSA key" in leaf else "RSA" if "RSA key" in leaf else leaf
    assert key_type("NORMAL") == "EC/ECDSA"
    assert key_type("NORMAL:-SIGN-ALL:+SIGN-RSA-SHA256:+SIGN-RSA-PSS-RSAE-SHA256") == "RSA"
    assert key_type("NORMAL:-VERS-ALL:+VERS-TLS1.2:-KX-ALL:+ECDHE-RSA") == "RSA"


@pytest.mark.parametrize("ver,args", [
    ("-tls1_3", ["-sigalgs", "rsa_pss_rsae_sha256"]),
    ("-tls1_2", ["-cipher", "ECDHE-RSA-AES128-GCM-SHA256"]),
])
def test_unusable_key_type_fails_with_alert(certd, ver, args):
    r = s_client(certd.p["ec-only"], ver, *args, sni="cats.pets.example.com")
    assert r.returncode != 0
    assert b"handshake failure" in r.stderr or b"alert" in r.stderr, r.stderr
    certd.wait_log("listener=ec-only")


def test_fifteen_certificates_on_one_listener(certd):
    for i in (1, 8, 15):
        cn = "s%02d.many.example.com" % i
        assert served_cn(certd.p["many"], sni=cn) == cn


def test_full_chain_is_sent(certd):
    r = s_client(certd.p["gcp"], sni="cats.pets.example.com")
    assert r.stdout.count(b"-----BEGIN CERTIFICATE-----") == 2  # leaf + CA from the chain file


def mtls_get(port, cert=None, key=None):
    ctx = ssl.create_default_context(cafile=cs("ca.pem"))
    if cert:
        ctx.load_cert_chain(cs(cert), cs(key))
    with socket.create_connection(("127.0.0.1", port), timeout=10) as raw:
        with ctx.wrap_socket(raw, server_hostname="cats.pets.example.com") as s:
            s.sendall(b"GET /mtls HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
            data = b""
            while chunk := s.recv(65536):
                data += chunk
            return data


def test_mtls_required(certd):
    port = certd.p["required"]
    assert b"path=/mtls" in mtls_get(port, "client.chain.pem", "client.key")
    certd.wait_log('listener=required sni=cats.pets.example.com cert=cats')
    certd.wait_log('client="CN=client one"')
    for cert, key in [(None, None), ("client-other.chain.pem", "client-other.key"),
                      ("client-revoked.chain.pem", "client-revoked.key")]:
        with pytest.raises((ssl.SSLError, ConnectionResetError, BrokenPipeError)):
            data = mtls_get(port, cert, key)
            # TLS 1.3: the client learns of the rejection only when it reads
            assert b"path=/mtls" not in data
            raise ssl.SSLError("rejected after the handshake")
    certd.wait_log("certificate revoked")


def test_mtls_optional(certd):
    port = certd.p["optional"]
    assert b"path=/mtls" in mtls_get(port)
    assert b"path=/mtls" in mtls_get(port, "client.chain.pem", "client.key")
    certd.wait_log('listener=optional sni=cats.pets.example.com cert=cats')


@pytest.mark.parametrize("cert,key,needle", [
    ("cats.der", "cats.key", "cats.der"),
    ("cats.pem", "cats-enc.key", "encrypted"),
    ("cats.pem", "dogs.key", "does not match"),
    ("empty.pem", "cats.key", "empty.pem"),
    ("garbage.pem", "cats.key", "garbage.pem"),
])
def test_bad_certificate_inputs_are_config_errors(tmp_path, cert, key, needle):
    cfg = {"listeners": [{"bind": "127.0.0.1:1", "certificates": ["c"], "backend": "app"}],
           "certificates": {"c": {"cert": cs(cert), "key": cs(key)}},
           "backends": {"app": {"servers": ["127.0.0.1:1"]}}}
    p = tmp_path / "k.json"
    p.write_text(json.dumps(cfg))
    r = subprocess.run([KTLSD, "--check", "-c", str(p)], capture_output=True, timeout=20)
    err = r.stderr.decode()
    assert r.returncode != 0 and "certificates.c" in err and needle in err, err


def test_domain_binding_must_match_certificate(tmp_path):
    cfg = {"listeners": [{"bind": "127.0.0.1:1", "certificates": ["c"], "backend": "app"}],
           "certificates": {"c": {"cert": cs("cats.chain.pem"), "key": cs("cats.key"),
                                  "domains": ["cats.pets.example.com", "birds.example.net"]}},
           "backends": {"app": {"servers": ["127.0.0.1:1"]}}}
    p = tmp_path / "k.json"
    p.write_text(json.dumps(cfg))
    r = subprocess.run([KTLSD, "--check", "-c", str(p)], capture_output=True, timeout=20)
    err = r.stderr.decode()
    assert r.returncode != 0 and "certificates.c.domains" in err and "birds.example.net" in err, err

"""What ktlsd answers to a TLS peer that breaks the record protocol after the handshake: the alert
RFC 8446 §6 / RFC 5246 §7.2 name, and the one OpenSSL's own server sends for the same records.

Every case is sent twice with the same certificate and suites, by tls_raw.RawTLS with the
session's real keys: to ktlsd (its record layer for the AEAD suites, OpenSSL's for CBC) and to
`openssl s_server`; both answers must be the expected one. Where OpenSSL 3.0 has no rule (it does
not cap KeyUpdates) the case says so and only ktlsd is held to the expected answer, BoringSSL's."""
import shutil
import subprocess

import pytest

from conftest import fixture, free_port, tls_config, wait_port
from tls_raw import ALERT, DATA, HANDSHAKE, RawTLS

CIPHERS12 = {"gcm": "ECDHE-ECDSA-AES128-GCM-SHA256", "cbc": "ECDHE-ECDSA-AES128-SHA"}
POLICY = {"versions": ["TLSv1.2", "TLSv1.3"], "ciphersuites": ["TLS_AES_128_GCM_SHA256"],
          "ciphers": list(CIPHERS12.values()), "groups": ["X25519"]}


def key_update(request):
    return b"\x18\x00\x00\x01" + bytes([request])


def many_key_updates(n):
    def send(t):
        out = b""
        for _ in range(n):
            out += t.seal(HANDSHAKE, key_update(0))
            t.tx.update13()
        return out
    return send


def bad_mac(t):
    rec = bytearray(t.seal(DATA, b"hello"))
    rec[-1] ^= 1
    return bytes(rec)


def too_long(version):
    n = 16384 + (256 if version == "1.3" else 2048) + 1
    return lambda t: b"\x17\x03\x03" + n.to_bytes(2, "big") + b"\0" * n


# (case, version "1.3" / "gcm" (TLS 1.2) / "cbc" (TLS 1.2), records to send, expected answer,
#  whether OpenSSL 3.0 answers the same)
CASES = [
    ("keyupdate_empty_body", "1.3", lambda t: t.seal(HANDSHAKE, b"\x18\0\0\0"), "decode_error", 1),
    ("keyupdate_request_2", "1.3", lambda t: t.seal(HANDSHAKE, key_update(2)),
     "illegal_parameter", 1),
    ("keyupdate_trailing_byte", "1.3", lambda t: t.seal(HANDSHAKE, b"\x18\0\0\x02\0\0"),
     "illegal_parameter", 1),
    ("alert_empty", "1.3", lambda t: t.seal(ALERT, b""), "unexpected_message", 1),
    ("alert_empty_padded", "1.3", lambda t: t.seal(ALERT, b"", pad=16), "unexpected_message", 1),
    ("alert_one_byte", "1.3", lambda t: t.seal(ALERT, b"\x02"), "unexpected_message", 1),
    ("alert_three_bytes", "1.3", lambda t: t.seal(ALERT, b"\x02\x0a\x00"), "unexpected_message",
     1),
    ("handshake_empty", "1.3", lambda t: t.seal(HANDSHAKE, b""), "unexpected_message", 1),
    ("inner_type_24", "1.3", lambda t: t.seal(24, b"x"), "unexpected_message", 1),
    ("inner_no_type", "1.3", lambda t: t.seal(0, b"", pad=8), "unexpected_message", 1),
    ("inner_plaintext_2^14+1", "1.3", lambda t: t.seal(DATA, b"a" * 16385), "record_overflow", 1),
    ("inner_2^14_padded", "1.3", lambda t: t.seal(DATA, b"a" * 16384, pad=200),
     "record_overflow", 0),
    ("ciphertext_too_long", "1.3", too_long("1.3"), "record_overflow", 1),
    ("bad_record_mac", "1.3", bad_mac, "bad_record_mac", 1),
    ("outer_type_24_garbage", "1.3", lambda t: b"\x18\x03\x03\x00\x20" + b"\x55" * 32,
     "unexpected_message", 1),
    ("outer_version_0301", "1.3", lambda t: b"\x17\x03\x01\x00\x20" + b"\x55" * 32,
     "decode_error", 1),
    ("ccs_after_handshake", "1.3", lambda t: b"\x14\x03\x03\x00\x01\x01", "unexpected_message", 1),
    ("empty_records_32", "1.3", lambda t: b"".join(t.seal(DATA, b"") for _ in range(32)),
     "open", 1),
    ("empty_records_33", "1.3", lambda t: b"".join(t.seal(DATA, b"") for _ in range(33)),
     "unexpected_message", 1),
    ("keyupdates_32", "1.3", many_key_updates(32), "open", 1),
    ("keyupdates_33", "1.3", many_key_updates(33), "unexpected_message", 0),
    ("type_24", "gcm", lambda t: t.seal(24, b"x"), "unexpected_message", 1),
    ("bad_record_mac", "gcm", bad_mac, "bad_record_mac", 1),
    ("alert_empty", "gcm", lambda t: t.seal(ALERT, b""), "unexpected_message", 1),
    ("alert_one_byte", "gcm", lambda t: t.seal(ALERT, b"\x02"), "unexpected_message", 1),
    ("outer_type_24_garbage", "gcm", lambda t: b"\x18\x03\x03\x00\x20" + b"\x55" * 32,
     "bad_record_mac", 1),
    ("outer_version_0301", "gcm", lambda t: b"\x17\x03\x01\x00\x20" + b"\x55" * 32,
     "protocol_version", 1),
    ("keyupdate", "gcm", lambda t: t.seal(HANDSHAKE, key_update(0)), "unexpected_message", 1),
    ("renegotiation", "gcm", lambda t: t.seal(HANDSHAKE, b"\x01\x00\x00\x00"),
     "warning no_renegotiation", 1),
    ("ciphertext_too_long", "gcm", too_long("1.2"), "record_overflow", 1),
    ("empty_records_33", "gcm", lambda t: b"".join(t.seal(DATA, b"") for _ in range(33)),
     "unexpected_message", 1),
    ("garbage_record", "cbc", lambda t: b"\x17\x03\x03\x00\x40" + b"\x55" * 64,
     "bad_record_mac", 1),
    ("garbage_unaligned", "cbc", lambda t: b"\x17\x03\x03\x00\x31" + b"\x55" * 49,
     "bad_record_mac", 1),
]


def run_case(port, version, records):
    t = RawTLS(port, "1.3" if version == "1.3" else "1.2",
               None if version == "1.3" else CIPHERS12[version])
    try:
        t.send(records(t))
        return t.answer(timeout=2)
    finally:
        t.close()


@pytest.fixture(scope="module")
def openssl_server():
    if not shutil.which("openssl"):
        pytest.skip("no openssl binary")
    port = free_port()
    p = subprocess.Popen(["openssl", "s_server", "-accept", "127.0.0.1:%d" % port, "-quiet",
                          "-cert", fixture("server-ec.chain.pem"), "-key", fixture("server-ec.key"),
                          "-num_tickets", "0", "-cipher", ":".join(CIPHERS12.values()),
                          "-ciphersuites", "TLS_AES_128_GCM_SHA256"],
                         stdin=subprocess.PIPE, stdout=subprocess.DEVNULL,
                         stderr=subprocess.DEVNULL)
    wait_port(port, proc=p)
    yield port
    p.kill()
    p.wait()


@pytest.fixture(scope="module")
def ktlsd_port(request):
    from conftest import Backend, Daemon
    b = Backend()
    cfg = tls_config([b.addr], security_policy="alerts")
    cfg["security_policies"] = {"alerts": POLICY}
    d = Daemon(cfg)
    yield d.ports[0], d
    assert d.stop() == 0, d.log()[-3000:]
    b.stop()


@pytest.mark.parametrize("case,version,records,expected,same",
                         CASES, ids=["%s-%s" % (c[1], c[0]) for c in CASES])
def test_alert(ktlsd_port, openssl_server, case, version, records, expected, same):
    got = run_case(ktlsd_port[0], version, records)
    ref = run_case(openssl_server, version, records)
    if same:
        assert ref == expected, "openssl s_server answered %r" % ref
    assert got == expected, "ktlsd answered %r (openssl s_server: %r)" % (got, ref)


def test_renegotiation_attempts_are_logged_once_per_connection(backend, daemon_factory):
    """A client may put a ClientHello in every record: each gets its no_renegotiation warning,
    but the log has one line for the connection (docs/security.md, "Logging"). A daemon of its
    own: the line is also limited to one a second over all connections."""
    cfg = tls_config([backend.addr], security_policy="alerts")
    cfg["security_policies"] = {"alerts": POLICY}
    d = daemon_factory(cfg)
    port = d.ports[0]
    t = RawTLS(port, "1.2", CIPHERS12["gcm"])
    try:
        local = "127.0.0.1:%d" % t.sock.getsockname()[1]
        t.send(b"".join(t.seal(HANDSHAKE, b"\x01\x00\x00\x00") for _ in range(20)))
        assert t.answer(timeout=2) == "warning no_renegotiation"
        t.send(t.seal(ALERT, b"\x01\x00"))  # close_notify
    finally:
        t.close()
    d.wait_log("conn peer=%s listener=web: client attempted renegotiation" % local)
    lines = [line for line in d.log().splitlines()
             if "peer=%s " % local in line and "renegotiation" in line]
    assert len(lines) == 1, lines

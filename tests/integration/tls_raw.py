"""A TLS client that, once Python's ssl has done the handshake, writes records of its own making:
any content type, length, padding or body, sealed with the session's real keys (from the keylog
and, for TLS 1.2, the ServerHello's random). It reads back what the server answers and names the
alert. tests/integration/test_alerts.py sends the same records to ktlsd and to `openssl s_server`.

Suites: TLS 1.3 TLS_AES_128_GCM_SHA256 and TLS 1.2 AES-128-GCM with SHA-256 (sealed and opened
here, RFC 8446 §5.2 and RFC 5288); TLS 1.2 AES-128-CBC-SHA, where only unauthenticated garbage is
written and the server's records are opened without checking their MAC."""
import hashlib
import hmac
import os
import socket
import ssl
import struct
import tempfile

from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

ALERT, HANDSHAKE, DATA = 21, 22, 23
ALERT_NAMES = {0: "close_notify", 10: "unexpected_message", 20: "bad_record_mac",
               22: "record_overflow", 40: "handshake_failure", 47: "illegal_parameter",
               50: "decode_error", 51: "decrypt_error", 70: "protocol_version",
               80: "internal_error", 90: "user_canceled", 100: "no_renegotiation"}


def hkdf_label(secret, label, length):
    """HKDF-Expand-Label with an empty context (RFC 8446 §7.1), SHA-256."""
    info = struct.pack("!H", length) + bytes([6 + len(label)]) + b"tls13 " + label + b"\0"
    out, t, i = b"", b"", 1
    while len(out) < length:
        t = hmac.new(secret, t + info + bytes([i]), hashlib.sha256).digest()
        out, i = out + t, i + 1
    return out[:length]


def prf12(secret, label, seed, length):
    """The TLS 1.2 PRF with SHA-256 (RFC 5246 §5)."""
    a, out, seed = label + seed, b"", label + seed
    while len(out) < length:
        a = hmac.new(secret, a, hashlib.sha256).digest()
        out += hmac.new(secret, a + seed, hashlib.sha256).digest()
    return out[:length]


class Dir:
    """One direction's AES-128-GCM key, IV (TLS 1.2: the 4-byte salt) and next sequence number."""

    def __init__(self, key, iv, seq, secret=None):
        self.aead, self.iv, self.seq, self.secret = AESGCM(key), iv, seq, secret

    def nonce13(self):
        return bytes(a ^ b for a, b in zip(self.iv, b"\0" * 4 + struct.pack("!Q", self.seq)))

    def update13(self):
        """The next traffic secret after a KeyUpdate (RFC 8446 §7.2)."""
        self.secret = hkdf_label(self.secret, b"traffic upd", 32)
        self.aead = AESGCM(hkdf_label(self.secret, b"key", 16))
        self.iv, self.seq = hkdf_label(self.secret, b"iv", 12), 0


class RawTLS:
    """A finished handshake with 127.0.0.1:port, then raw records. version: "1.2" or "1.3"."""

    def __init__(self, port, version, ciphers=None, timeout=5):
        self.version = version
        keylog = tempfile.NamedTemporaryFile(prefix="tls-raw-", suffix=".keys", delete=False)
        keylog.close()
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
        v = ssl.TLSVersion.TLSv1_3 if version == "1.3" else ssl.TLSVersion.TLSv1_2
        ctx.minimum_version = ctx.maximum_version = v
        if ciphers:
            ctx.set_ciphers(ciphers)
        ctx.keylog_filename = keylog.name
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=timeout)
        inb, outb = ssl.MemoryBIO(), ssl.MemoryBIO()
        obj = ctx.wrap_bio(inb, outb, server_hostname="localhost")
        from_server = b""
        while True:
            try:
                obj.do_handshake()
                break
            except ssl.SSLWantReadError:
                self.sock.sendall(outb.read())
                chunk = self.sock.recv(65536)
                if not chunk:
                    raise ConnectionError("closed during the handshake")
                from_server += chunk
                inb.write(chunk)
        self.sock.sendall(outb.read())  # the client's Finished
        self.cipher = obj.cipher()[0]
        with open(keylog.name) as f:
            lines = [line.split() for line in f if line.strip() and line[0] != "#"]
        os.unlink(keylog.name)
        keys = {p[0]: p[1:] for p in lines}
        self.rbuf = inb.read()  # whatever the server sent after its Finished
        if version == "1.3":
            cs, ss = (bytes.fromhex(keys[k][1]) for k in
                      ("CLIENT_TRAFFIC_SECRET_0", "SERVER_TRAFFIC_SECRET_0"))
            self.tx = Dir(hkdf_label(cs, b"key", 16), hkdf_label(cs, b"iv", 12), 0, cs)
            self.rx = Dir(hkdf_label(ss, b"key", 16), hkdf_label(ss, b"iv", 12), 0, ss)
            return
        cr, master = (bytes.fromhex(x) for x in keys["CLIENT_RANDOM"])
        # ServerHello: record header (5), handshake header (4), version (2), random (32)
        sr = from_server[11:43]
        if "GCM" in self.cipher:
            kb = prf12(master, b"key expansion", sr + cr, 40)
            # The Finished of each side was record 0 under these keys.
            self.tx, self.rx = Dir(kb[0:16], kb[32:36], 1), Dir(kb[16:32], kb[36:40], 1)
        else:  # AES-128-CBC with HMAC-SHA1: only the server's records are opened
            kb = prf12(master, b"key expansion", sr + cr, 72)
            self.tx, self.rx = None, None
            self.cbc_rx = (kb[20:40], kb[56:72])  # server MAC key, server write key

    def seal(self, ctype, body, pad=0, outer=None):
        """One record of content type ctype carrying body (TLS 1.3: pad zero bytes after the inner
        type; outer: the outer type, default application_data)."""
        d = self.tx
        if self.version == "1.3":
            inner = body + bytes([ctype]) + b"\0" * pad
            hdr = struct.pack("!BHH", DATA if outer is None else outer, 0x0303, len(inner) + 16)
            rec = hdr + d.aead.encrypt(d.nonce13(), inner, hdr)
        else:
            explicit = struct.pack("!Q", d.seq)
            aad = explicit + struct.pack("!BHH", ctype, 0x0303, len(body))
            ct = d.aead.encrypt(d.iv + explicit, body, aad)
            rec = struct.pack("!BHH", ctype, 0x0303, 8 + len(ct)) + explicit + ct
        d.seq += 1
        return rec

    def send(self, data):
        self.sock.sendall(data)

    def answer(self, timeout=5):
        """Reads until the server closes or times out. Returns the first alert's name (its level
        in front for a warning: "warning no_renegotiation"), or None when the connection closed
        with no alert, or "open" when it stayed open for timeout seconds."""
        self.sock.settimeout(timeout)
        buf = self.rbuf
        while True:
            while len(buf) >= 5:
                ctype, _ver, n = struct.unpack("!BHH", buf[:5])
                if len(buf) < 5 + n:
                    break
                rec, buf = buf[:5 + n], buf[5 + n:]
                got = self._open(rec)
                if got and got[0] == ALERT and len(got[1]) == 2:
                    level, desc = got[1]
                    name = ALERT_NAMES.get(desc, str(desc))
                    return name if level == 2 or desc == 0 else "warning " + name
            try:
                chunk = self.sock.recv(65536)
            except socket.timeout:
                return "open"
            except ConnectionResetError:
                return None
            if not chunk:
                return None
            buf += chunk

    def _open(self, rec):
        """(inner type, plaintext) of one record from the server; None if it cannot be opened."""
        d = self.rx
        try:
            if d is None:
                # TLS 1.2 CBC: IV, then AES-CBC(plaintext || MAC || padding), or with
                # encrypt_then_mac (RFC 7366) AES-CBC(plaintext || padding) || MAC
                body = rec[5:]
                etm = (len(body) - 16) % 16 == 20 % 16
                if etm:
                    body = body[:-20]
                dec = Cipher(algorithms.AES(self.cbc_rx[1]), modes.CBC(body[:16])).decryptor()
                pt = dec.update(body[16:]) + dec.finalize()
                pt = pt[:len(pt) - pt[-1] - 1]
                return rec[0], pt if etm else pt[:-20]
            if self.version == "1.3":
                inner = d.aead.decrypt(d.nonce13(), rec[5:], rec[:5]).rstrip(b"\0")
                d.seq += 1
                return inner[-1], inner[:-1]
            explicit = rec[5:13]
            aad = struct.pack("!Q", d.seq) + rec[:3] + struct.pack("!H", len(rec) - 5 - 8 - 16)
            pt = d.aead.decrypt(d.iv + explicit, rec[13:], aad)
            d.seq += 1
            return rec[0], pt
        except Exception:
            return None

    def close(self):
        self.sock.close()

"""PROXY protocol v1 and v2 towards the backend: a backend that parses the header sees the real
client address and port, the listener address, and (v2) the ALPN, SNI, TLS version, cipher and
verified client certificate CN as TLVs; the client's bytes follow the header, unchanged."""
import json
import socket
import ssl
import struct

import pytest

from conftest import TcpBackend, client_context, fixture, free_port, tls_config

SIG = b"\r\n\r\n\x00\r\nQUIT\n"


def recv_exact(c, n):
    data = b""
    while len(data) < n:
        chunk = c.recv(n - len(data))
        if not chunk:
            raise EOFError("short header")
        data += chunk
    return data


def parse(c):
    """Reads and decodes one PROXY header from c."""
    first = recv_exact(c, 12)
    if first == SIG:
        ver_cmd, fam, length = struct.unpack("!BBH", recv_exact(c, 4))
        body = recv_exact(c, length)
        out = {"version": 2, "ver_cmd": ver_cmd, "family": fam, "tlvs": {}}
        if fam == 0x11:
            src, dst, sport, dport = struct.unpack("!4s4sHH", body[:12])
            out.update(src=socket.inet_ntop(socket.AF_INET, src),
                       dst=socket.inet_ntop(socket.AF_INET, dst), sport=sport, dport=dport)
            rest = body[12:]
        else:
            rest = body
        while rest:
            t, ln = struct.unpack("!BH", rest[:3])
            v, rest = rest[3:3 + ln], rest[3 + ln:]
            if t == 0x20:
                client, verify = struct.unpack("!BI", v[:5])
                sub, v = {}, v[5:]
                while v:
                    st, sl = struct.unpack("!BH", v[:3])
                    sub["%#x" % st] = v[3:3 + sl].decode()
                    v = v[3 + sl:]
                out["ssl"] = {"client": client, "verify": verify, "sub": sub}
            else:
                out["tlvs"]["%#x" % t] = v.decode()
        return out
    line = first
    while not line.endswith(b"\r\n"):
        line += recv_exact(c, 1)
    parts = line.decode().split()
    return {"version": 1, "proto": parts[1], "src": parts[2], "dst": parts[3],
            "sport": int(parts[4]), "dport": int(parts[5])}


def ProxyBackend():
    """Parses the header, then replies with it as JSON followed by the first client bytes."""
    def handle(c):
        with c:
            hdr = parse(c)
            after = c.recv(5)
            c.sendall(json.dumps({"header": hdr, "after": after.decode()}).encode())
    return TcpBackend(handle)


def talk(port, ctx=None, alpn=None):
    with socket.create_connection(("127.0.0.1", port), timeout=10) as raw:
        local_port = raw.getsockname()[1]
        if ctx:
            if alpn:
                ctx.set_alpn_protocols(alpn)
            s = ctx.wrap_socket(raw, server_hostname="localhost")
        else:
            s = raw
        s.sendall(b"hello")
        data = b""
        while chunk := s.recv(65536):
            data += chunk
        return json.loads(data), local_port


@pytest.mark.parametrize("version", [1, 2])
def test_tls_listener_sends_proxy_header(daemon_factory, version):
    b = ProxyBackend()
    d = daemon_factory(tls_config([b.addr], proxy_protocol="v%d" % version,
                                  alpn=["h2", "http/1.1"]))
    got, local_port = talk(d.ports[0], client_context(), alpn=["http/1.1"])
    h = got["header"]
    assert got["after"] == "hello"  # the client's bytes follow the header, unchanged
    assert (h["src"], h["sport"], h["dst"], h["dport"]) == \
        ("127.0.0.1", local_port, "127.0.0.1", d.ports[0])
    if version == 1:
        assert h["proto"] == "TCP4"
        return
    assert h["ver_cmd"] == 0x21 and h["family"] == 0x11
    assert h["tlvs"] == {"0x1": "http/1.1", "0x2": "localhost"}
    assert h["ssl"]["client"] == 0x01  # TLS, no client certificate
    assert h["ssl"]["sub"]["0x21"] == "TLSv1.3"
    assert h["ssl"]["sub"]["0x23"] == "TLS_AES_128_GCM_SHA256"


def test_v2_carries_the_verified_client_certificate_cn(daemon_factory):
    b = ProxyBackend()
    cfg = tls_config([b.addr], proxy_protocol="v2",
                     client_auth={"mode": "optional", "ca": "clients"})
    cfg["ca_certificates"] = {"clients": {"file": fixture("ca.pem")}}
    d = daemon_factory(cfg)
    ctx = client_context()
    ctx.load_cert_chain(fixture("client.chain.pem"), fixture("client.key"))
    got, _ = talk(d.ports[0], ctx)
    ssl_tlv = got["header"]["ssl"]
    assert ssl_tlv["client"] == 0x03 and ssl_tlv["verify"] == 0
    assert ssl_tlv["sub"]["0x22"] == "test client"


def test_tcp_listener_v2_has_addresses_and_no_tls_tlv(backend, daemon_factory):
    b = ProxyBackend()
    port = free_port()
    d = daemon_factory({"listeners": [{"name": "plain", "bind": "127.0.0.1:%d" % port,
                                       "protocol": "tcp", "backend": "app",
                                       "proxy_protocol": "v2"}],
                        "backends": {"app": {"servers": [b.addr]}}})
    got, local_port = talk(port)
    h = got["header"]
    assert got["after"] == "hello"
    assert (h["src"], h["sport"], h["dport"]) == ("127.0.0.1", local_port, port)
    assert "ssl" not in h and h["tlvs"] == {}

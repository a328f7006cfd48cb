"""The issuer's key set over real https: verified TLS, cached, re-read on an unknown ``kid``, no redirects.

A local TLS server (a throw-away CA and a server certificate for 127.0.0.1, made here with
``cryptography``) serves the JWKS; the client trusts that CA the way a deployment trusts an
internal one, through ``SSL_CERT_FILE``. No Spark, no lake.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import json
import ssl
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import jwt
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from pdp.api.auth import JwksError, JwksSource, TokenError, TokenVerifier

ISSUER, AUDIENCE = "https://idp.test", "pdp-api"


def _certificate(subject: str, key: ec.EllipticCurvePrivateKey, issuer: x509.Certificate | None,
                 signer: ec.EllipticCurvePrivateKey, *, ca: bool) -> x509.Certificate:
    now = dt.datetime.now(dt.UTC)
    builder = (x509.CertificateBuilder()
               .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, subject)]))
               .issuer_name(issuer.subject if issuer else x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, subject)]))
               .public_key(key.public_key()).serial_number(x509.random_serial_number())
               .not_valid_before(now - dt.timedelta(minutes=5)).not_valid_after(now + dt.timedelta(hours=1))
               .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True))
    if not ca:
        loopback = x509.IPAddress(ipaddress.ip_address("127.0.0.1"))
        builder = builder.add_extension(x509.SubjectAlternativeName([loopback]), critical=False)
    return builder.sign(signer, hashes.SHA256())


class _Jwks:
    """What the server serves and how often it was asked."""

    def __init__(self) -> None:
        self.document: dict[str, Any] = {"keys": []}
        self.hits = 0
        self.redirect = False


@pytest.fixture(scope="module")
def tls_jwks(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, Path, _Jwks]]:
    folder = tmp_path_factory.mktemp("tls")
    ca_key, server_key = ec.generate_private_key(ec.SECP256R1()), ec.generate_private_key(ec.SECP256R1())
    ca = _certificate("pdp test CA", ca_key, None, ca_key, ca=True)
    server = _certificate("127.0.0.1", server_key, ca, ca_key, ca=False)
    (folder / "ca.pem").write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    (folder / "server.pem").write_bytes(server.public_bytes(serialization.Encoding.PEM))
    (folder / "server.key").write_bytes(server_key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()))
    state = _Jwks()

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            state.hits += 1
            if state.redirect:
                self.send_response(302)
                self.send_header("Location", "https://127.0.0.1:9/elsewhere.json")
                self.end_headers()
                return
            body = json.dumps(state.document).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: Any) -> None:
            pass

    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(folder / "server.pem", folder / "server.key")
    httpd.socket = context.wrap_socket(httpd.socket, server_side=True)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"https://127.0.0.1:{httpd.server_address[1]}/jwks.json", folder / "ca.pem", state
    finally:
        httpd.shutdown()
        httpd.server_close()


def _signing_key(kid: str) -> tuple[ec.EllipticCurvePrivateKey, dict[str, Any]]:
    key = ec.generate_private_key(ec.SECP256R1())
    jwk = json.loads(jwt.algorithms.ECAlgorithm.to_jwk(key.public_key()))
    return key, {**jwk, "kid": kid, "alg": "ES256", "use": "sig"}


def _token(key: ec.EllipticCurvePrivateKey, kid: str) -> str:
    now = int(dt.datetime.now(dt.UTC).timestamp())
    claims = {"iss": ISSUER, "aud": AUDIENCE, "sub": "siop-1", "iat": now, "nbf": now - 5, "exp": now + 300,
              "pdp_role": "siop_platform", "pdp_territories": ["douaisis"]}
    return jwt.encode(claims, key, algorithm="ES256", headers={"kid": kid})


def test_keys_over_verified_https_cached_and_refreshed_on_an_unknown_kid(tls_jwks, monkeypatch) -> None:
    url, ca, state = tls_jwks
    monkeypatch.setenv("SSL_CERT_FILE", str(ca))
    first_key, first_jwk = _signing_key("k1")
    state.document, state.hits, state.redirect = {"keys": [first_jwk]}, 0, False
    source = JwksSource(url, refresh_interval=0.0)
    verifier = TokenVerifier(issuer=ISSUER, audience=AUDIENCE, jwks=source)
    assert verifier.verify(_token(first_key, "k1"))["sub"] == "siop-1"
    assert verifier.verify(_token(first_key, "k1"))["sub"] == "siop-1"
    assert state.hits == 1, "a known kid is served from the cache"
    # the issuer rotates: a token signed with the new key makes the source read the set again
    second_key, second_jwk = _signing_key("k2")
    state.document = {"keys": [first_jwk, second_jwk]}
    assert verifier.verify(_token(second_key, "k2"))["sub"] == "siop-1"
    assert state.hits == 2
    # a kid the issuer never published is a token error after one more read, not a server error
    with pytest.raises(TokenError, match="kid"):
        verifier.verify(_token(ec.generate_private_key(ec.SECP256R1()), "k3"))
    assert state.hits == 3


def test_an_untrusted_certificate_or_a_redirect_gives_no_keys(tls_jwks, monkeypatch) -> None:
    url, ca, state = tls_jwks
    _key, jwk = _signing_key("k1")
    state.document, state.redirect = {"keys": [jwk]}, False
    monkeypatch.delenv("SSL_CERT_FILE", raising=False)  # the public CAs only: the test CA is not one
    with pytest.raises(JwksError, match="unreadable") as refused:
        JwksSource(url).key("k1")
    assert "Traceback" not in str(refused.value)
    monkeypatch.setenv("SSL_CERT_FILE", str(ca))
    state.redirect = True
    with pytest.raises(JwksError, match="unreadable"):
        JwksSource(url).key("k1")
    state.redirect = False
    with pytest.raises(JwksError, match="plain http"):
        JwksSource(url.replace("https://", "http://"))

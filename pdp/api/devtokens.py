"""Development tokens: an ES256 key made under ``var/api/`` and its JWKS beside it, for `pdp token mint`.

Why: the README's curl examples and the tests need real signed tokens without a real identity
provider. The key is a real P-256 key and the tokens go through exactly the same verification
as production ones (the API reads the JWKS from ``PDP_OIDC_JWKS``). It is refused unless
``PDP_DEV_TOKENS`` is on, so a production deployment cannot mint its own tokens by accident.

Files: ``<var>/api/dev-signing-key.pem`` (mode 0600) and ``<var>/api/dev-jwks.json``; when
``PDP_OIDC_JWKS`` names a file, the JWKS is (also) written there.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from pdp.config import Settings

__all__ = ["DevSigner", "DevTokenError"]

_MAX_TTL = 24 * 3600


class DevTokenError(Exception):
    """A development token cannot be made (one line)."""


def _b64(n: int) -> str:
    return base64.urlsafe_b64encode(n.to_bytes(32, "big")).rstrip(b"=").decode("ascii")


@dataclass(frozen=True)
class DevSigner:
    """The development key, its kid, and the issuer/audience the tokens carry."""

    key: ec.EllipticCurvePrivateKey
    kid: str
    issuer: str
    audience: str
    jwks_path: Path

    @classmethod
    def ensure(cls, settings: Settings) -> DevSigner:
        """The key under ``var/api/`` (created once) with its JWKS written; refused outside development."""
        if not settings.dev_tokens:
            raise DevTokenError("development tokens are off: set PDP_DEV_TOKENS=1 (never in production)")
        if not settings.oidc_issuer or not settings.oidc_audience:
            raise DevTokenError("set PDP_OIDC_ISSUER and PDP_OIDC_AUDIENCE (the API checks both)")
        folder = Path(settings.var_dir) / "api"
        folder.mkdir(parents=True, exist_ok=True)
        pem = folder / "dev-signing-key.pem"
        if pem.exists():
            key = serialization.load_pem_private_key(pem.read_bytes(), password=None)
            if not isinstance(key, ec.EllipticCurvePrivateKey):
                raise DevTokenError(f"{pem}: not an EC private key")
        else:
            key = ec.generate_private_key(ec.SECP256R1())
            data = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                     serialization.NoEncryption())
            fd = os.open(pem, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(fd, "wb") as f:
                f.write(data)
        numbers = key.public_key().public_numbers()
        jwk = {"kty": "EC", "crv": "P-256", "x": _b64(numbers.x), "y": _b64(numbers.y), "use": "sig", "alg": "ES256"}
        kid = "dev-" + hashlib.sha256(json.dumps(jwk, sort_keys=True).encode()).hexdigest()[:16]
        document = json.dumps({"keys": [{**jwk, "kid": kid}]}, indent=2) + "\n"
        targets = [folder / "dev-jwks.json"]
        if settings.oidc_jwks and not settings.oidc_jwks.startswith(("https://", "http://")):
            targets.append(Path(settings.oidc_jwks))
        for target in targets:
            target.parent.mkdir(parents=True, exist_ok=True)
            if not target.exists() or target.read_text(encoding="utf-8") != document:
                target.write_text(document, encoding="utf-8")
        return cls(key, kid, settings.oidc_issuer, settings.oidc_audience, targets[-1])

    def mint(
        self, *, role: str, territories: list[str], rpps: str | None = None, ttl: int = 3600,
        sub: str | None = None, **extra: Any,
    ) -> str:
        """A signed token with the platform's claims; ``extra`` overrides any claim (tests use it)."""
        if not 1 <= ttl <= _MAX_TTL:
            raise DevTokenError(f"--ttl must be between 1 and {_MAX_TTL} seconds")
        now = int(time.time())
        claims: dict[str, Any] = {
            "iss": self.issuer, "aud": self.audience, "sub": sub or f"dev-{role}-{uuid.uuid4().hex[:8]}",
            "iat": now, "nbf": now, "exp": now + ttl, "jti": uuid.uuid4().hex,
            "pdp_role": role, "pdp_territories": list(territories),
        }
        if rpps is not None:
            claims["pdp_rpps"] = rpps
        claims.update(extra)
        return jwt.encode(claims, self.key, algorithm="ES256", headers={"kid": self.kid})

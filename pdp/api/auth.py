"""Bearer-token verification: OAuth2 JWTs signed RS256 or ES256, checked against the issuer's JWKS.

Why this shape: every request that is not ``/healthz`` or ``/openapi.json`` starts here, so this
module must (1) never accept what a careless verifier would — ``alg: none``, HMAC algorithms
(an RSA public key used as an HMAC secret is the classic confusion attack), a token from
another issuer or for another audience, an expired or not-yet-valid token — and (2) never turn
a bad token into a 500: every failure is a :class:`TokenError` with a one-line reason that the
API sends back as ``401`` with ``WWW-Authenticate: Bearer error="invalid_token"``. The JOSE work
is PyJWT's (with ``cryptography``); this module chooses the algorithms, the claims required and
where keys come from.

Keys: ``PDP_OIDC_JWKS`` is a file path or an ``https://`` URL. The key set is cached; a token
whose ``kid`` is unknown triggers one re-read (at most every ``refresh_interval`` seconds, so a
flood of forged ``kid`` values cannot make us hammer the issuer), which is how a key rotation at
the issuer is picked up without a restart.

Example::

    verifier = TokenVerifier(issuer="https://auth.example", audience="pdp-api", jwks="var/api/jwks.json")
    claims = verifier.verify(token)       # or TokenError("token expired")
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import jwt
from jwt.exceptions import PyJWKError

__all__ = ["ALGORITHMS", "JwksError", "JwksSource", "TokenError", "TokenVerifier"]

#: Asymmetric algorithms only: `none` and every HS* are refused before any key is looked at.
ALGORITHMS: tuple[str, ...] = ("RS256", "ES256")
_MAX_TOKEN_BYTES = 8192
_LEEWAY_SECONDS = 30


class TokenError(Exception):
    """The bearer token is not acceptable; the message is the one-line reason sent to the client."""


class JwksError(Exception):
    """The key set cannot be read or is not a JWKS (a configuration problem, one line)."""


class JwksSource:
    """The issuer's public keys by ``kid``, from a file or an https URL; cached, re-read on an unknown kid."""

    def __init__(self, location: str, *, refresh_interval: float = 10.0, timeout: float = 5.0) -> None:
        if not location:
            raise JwksError("PDP_OIDC_JWKS is not set: the API cannot verify tokens without the issuer's JWKS")
        if location.startswith("http://"):
            raise JwksError("PDP_OIDC_JWKS must be an https URL or a file path (plain http is refused)")
        self.location = location
        self.refresh_interval = refresh_interval
        self.timeout = timeout
        self._keys: dict[str, jwt.PyJWK] = {}
        self._loaded_at = float("-inf")
        self._lock = threading.Lock()

    def _fetch(self) -> Mapping[str, Any]:
        if self.location.startswith("https://"):
            import httpx

            try:
                response = httpx.get(self.location, timeout=self.timeout, follow_redirects=False)
                response.raise_for_status()
                return response.json()
            except (httpx.HTTPError, ValueError) as exc:
                raise JwksError(f"JWKS {self.location}: unreadable ({type(exc).__name__})") from None
        try:
            return json.loads(Path(self.location).read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            raise JwksError(f"JWKS file {self.location}: unreadable ({type(exc).__name__})") from None

    def _load(self) -> None:
        document = self._fetch()
        keys: dict[str, jwt.PyJWK] = {}
        for item in document.get("keys", []) if isinstance(document, Mapping) else []:
            if not isinstance(item, Mapping) or not item.get("kid") or item.get("use", "sig") != "sig":
                continue
            if item.get("kty") not in ("RSA", "EC") or item.get("alg", "ES256") not in ALGORITHMS:
                continue  # symmetric ("oct") keys are never trusted, whatever the token says
            try:
                keys[str(item["kid"])] = jwt.PyJWK(dict(item))
            except PyJWKError:
                continue
        if not keys:
            raise JwksError(f"JWKS {self.location}: no usable RS256/ES256 signing key")
        self._keys, self._loaded_at = keys, time.monotonic()

    def key(self, kid: str) -> jwt.PyJWK:
        """The key ``kid``; re-reads the set once if unknown (rate-limited); :class:`TokenError` if still unknown."""
        with self._lock:
            if kid not in self._keys and time.monotonic() - self._loaded_at >= self.refresh_interval:
                try:
                    self._load()
                except JwksError:
                    if not self._keys:
                        raise
            found = self._keys.get(kid)
        if found is None:
            raise TokenError("unknown signing key (kid)")
        return found


class TokenVerifier:
    """Verifies a bearer token and returns its claims; every failure is a :class:`TokenError`."""

    def __init__(self, *, issuer: str, audience: str, jwks: JwksSource | str) -> None:
        if not issuer or not audience:
            raise JwksError("PDP_OIDC_ISSUER and PDP_OIDC_AUDIENCE must be set: the API accepts no token without them")
        self.issuer, self.audience = issuer, audience
        self.jwks = jwks if isinstance(jwks, JwksSource) else JwksSource(jwks)

    def verify(self, token: str) -> dict[str, Any]:
        if not token or len(token) > _MAX_TOKEN_BYTES or token.count(".") != 2:
            raise TokenError("malformed token")
        try:
            header = jwt.get_unverified_header(token)
        except jwt.PyJWTError:
            raise TokenError("malformed token header") from None
        alg = header.get("alg")
        if alg not in ALGORITHMS:
            raise TokenError(f"algorithm not accepted (accepted: {', '.join(ALGORITHMS)})")
        kid = header.get("kid")
        if not isinstance(kid, str) or not kid:
            raise TokenError("token header has no key id (kid)")
        key = self.jwks.key(kid)
        if key.algorithm_name not in ALGORITHMS or (key.algorithm_name != alg):
            raise TokenError("token algorithm does not match its key")
        try:
            return jwt.decode(
                token, key=key.key, algorithms=[alg], audience=self.audience, issuer=self.issuer,
                leeway=_LEEWAY_SECONDS,
                options={"require": ["exp", "iat", "iss", "aud", "sub"], "verify_signature": True},
            )
        except jwt.ExpiredSignatureError:
            raise TokenError("token expired") from None
        except jwt.ImmatureSignatureError:
            raise TokenError("token not yet valid (nbf/iat in the future)") from None
        except jwt.InvalidIssuerError:
            raise TokenError("wrong issuer") from None
        except jwt.InvalidAudienceError:
            raise TokenError("wrong audience") from None
        except jwt.MissingRequiredClaimError as exc:
            raise TokenError(f"missing claim {exc.claim}") from None
        except jwt.InvalidSignatureError:
            raise TokenError("bad signature") from None
        except jwt.PyJWTError as exc:
            raise TokenError(f"invalid token ({type(exc).__name__})") from None
        except (ValueError, TypeError):
            raise TokenError("malformed token") from None

"""Every bad token is a 401 with a Bearer challenge (never a 500); purposes are checked before any data.

These run against an app over an empty lake (no Spark): authentication happens before any read.
"""

from __future__ import annotations

import base64
import json
import time
from pathlib import Path

import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from fastapi.testclient import TestClient
from jwt.algorithms import RSAAlgorithm

from pdp.api import create_app
from pdp.api.auth import JwksError
from pdp.api.devtokens import DevSigner, DevTokenError
from pdp.api.psc import PscMappingError, map_psc_claims
from pdp.config import Settings

ISSUER, AUDIENCE = "https://auth.test.pdp", "pdp-api-test"
ROUTE = "/definitions"


@pytest.fixture(scope="module")
def light(tmp_path_factory: pytest.TempPathFactory) -> tuple[TestClient, DevSigner, Settings]:
    var = tmp_path_factory.mktemp("auth var")
    settings = Settings(_env_file=None, var_dir=var, lake_uri=str(var / "lake"), db_url=f"sqlite:///{var / 'pdp.db'}",
                        key_store=var / "keys", oidc_issuer=ISSUER, oidc_audience=AUDIENCE,
                        oidc_jwks=str(var / "jwks.json"), dev_tokens=True)
    signer = DevSigner.ensure(settings)
    client = TestClient(create_app(settings), raise_server_exceptions=False)
    return client, signer, settings


def _b64(data: dict) -> str:
    return base64.urlsafe_b64encode(json.dumps(data).encode()).rstrip(b"=").decode()


def _claims(**over: object) -> dict:
    now = int(time.time())
    claims = {"iss": ISSUER, "aud": AUDIENCE, "sub": "t-1", "iat": now, "nbf": now, "exp": now + 600,
              "pdp_role": "siop_platform", "pdp_territories": ["douaisis"]}
    claims.update(over)
    return {k: v for k, v in claims.items() if v is not None}


def _call(client: TestClient, token: str | None, purpose: str | None = "care_coordination", *,
          scheme: str = "Bearer"):
    headers = {} if token is None else {"Authorization": f"{scheme} {token}"}
    if purpose is not None:
        headers["X-Purpose"] = purpose
    return client.get(ROUTE, headers=headers)


def bad_tokens(signer: DevSigner) -> dict[str, str | None]:
    other = ec.generate_private_key(ec.SECP256R1())
    now = int(time.time())
    header = {"kid": signer.kid}
    public_jwk = json.dumps({"kid": signer.kid})
    return {
        "missing": None,
        "expired": jwt.encode(_claims(iat=now - 7200, nbf=now - 7200, exp=now - 3600), signer.key, "ES256",
                              headers=header),
        "not yet valid": jwt.encode(_claims(nbf=now + 3600, exp=now + 7200), signer.key, "ES256", headers=header),
        "wrongly signed": jwt.encode(_claims(), other, "ES256", headers=header),
        "wrong issuer": jwt.encode(_claims(iss="https://evil.example"), signer.key, "ES256", headers=header),
        "wrong audience": jwt.encode(_claims(aud="another-api"), signer.key, "ES256", headers=header),
        "alg none": f"{_b64({'alg': 'none', 'kid': signer.kid, 'typ': 'JWT'})}.{_b64(_claims())}.",
        "HS256 with the public key as secret": jwt.encode(_claims(), public_jwk, "HS256", headers=header),
        "unknown kid": jwt.encode(_claims(), other, "ES256", headers={"kid": "nobody"}),
        "no kid": jwt.encode(_claims(), signer.key, "ES256"),
        "no exp": jwt.encode(_claims(exp=None), signer.key, "ES256", headers=header),
        "no sub": jwt.encode(_claims(sub=None), signer.key, "ES256", headers=header),
        "unknown role": jwt.encode(_claims(pdp_role="admin"), signer.key, "ES256", headers=header),
        "professional without RPPS": jwt.encode(_claims(pdp_role="professional"), signer.key, "ES256",
                                                headers=header),
        "malformed": "not-a-token",
        "three garbage parts": "a.b.c",
        "truncated signature": signer.mint(role="siop_platform", territories=["douaisis"])[:-6],
        "huge": "a" * 9000 + ".b.c",
    }


def test_every_bad_token_is_a_401_with_a_bearer_challenge(light) -> None:
    client, signer, _ = light
    for case, token in bad_tokens(signer).items():
        response = _call(client, token)
        assert response.status_code == 401, (case, response.status_code, response.text)
        challenge = response.headers.get("www-authenticate", "")
        assert challenge.startswith("Bearer ") and 'error="invalid_token"' in challenge, case
        assert "error_description=" in challenge, case
    assert _call(client, signer.mint(role="siop_platform", territories=["douaisis"]), scheme="Basic").status_code == 401


def test_a_good_token_passes_and_the_purpose_is_checked(light) -> None:
    client, signer, _ = light
    good = signer.mint(role="siop_platform", territories=["douaisis"])
    assert _call(client, good).status_code == 200
    missing = _call(client, good, purpose=None)
    assert missing.status_code == 400
    assert set(missing.json()["detail"]["allowed_purposes"]) == {"care_coordination", "prevention_outreach",
                                                                 "quality_review"}
    unknown = _call(client, good, purpose="marketing")
    assert unknown.status_code == 400 and "care_coordination" in unknown.json()["detail"]["allowed_purposes"]
    assert _call(client, good, purpose="audit_review").status_code == 403  # declared, not the SIOP's


def test_rs256_keys_are_accepted_and_a_rotated_key_is_fetched_on_its_unknown_kid(light) -> None:
    client, _signer, settings = light
    rsa_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    jwk = json.loads(RSAAlgorithm.to_jwk(rsa_key.public_key()))
    jwks_path = Path(settings.oidc_jwks)
    document = json.loads(jwks_path.read_text())
    document["keys"].append({**jwk, "kid": "rotated-rsa", "alg": "RS256", "use": "sig"})
    client.app.state.ctx.verifier.jwks.refresh_interval = 0.0  # the test does not wait out the rate limit
    jwks_path.write_text(json.dumps(document))
    token = jwt.encode(_claims(), rsa_key, "RS256", headers={"kid": "rotated-rsa"})
    assert _call(client, token).status_code == 200
    # an RSA key cannot be used to sign an ES256 header, nor a symmetric key be smuggled into the JWKS
    document["keys"].append({"kty": "oct", "k": base64.urlsafe_b64encode(b"s" * 32).decode(), "kid": "sym"})
    jwks_path.write_text(json.dumps(document))
    assert _call(client, jwt.encode(_claims(), "s" * 32, "HS256", headers={"kid": "sym"})).status_code == 401


def test_healthz_and_openapi_are_public(light) -> None:
    client, _, _ = light
    assert client.get("/healthz").json()["status"] == "ok"
    assert "/siop/{territory}/worklist" in client.get("/openapi.json").json()["paths"]


def test_dev_tokens_are_refused_outside_development(tmp_path: Path) -> None:
    off = Settings(_env_file=None, var_dir=tmp_path, oidc_issuer=ISSUER, oidc_audience=AUDIENCE)
    with pytest.raises(DevTokenError, match="PDP_DEV_TOKENS"):
        DevSigner.ensure(off)


def test_the_cli_refuses_to_mint_without_the_development_setting(tmp_path: Path) -> None:
    import subprocess
    import sys

    env = {"PATH": "/usr/bin:/bin", "PDP_VAR_DIR": str(tmp_path), "PDP_OIDC_ISSUER": ISSUER,
           "PDP_OIDC_AUDIENCE": AUDIENCE, "PYTHONPATH": str(Path(__file__).resolve().parents[2])}
    code = "from pdp.cli import main; main()"
    done = subprocess.run([sys.executable, "-c", code, "token", "mint", "--role", "dmp", "--territory", "*"],
                          env=env, capture_output=True, text=True, cwd=tmp_path, timeout=120)
    assert done.returncode != 0 and done.stderr.strip().count("\n") == 0 and "PDP_DEV_TOKENS" in done.stderr
    done = subprocess.run([sys.executable, "-c", code, "token", "mint", "--role", "dmp", "--territory", "*"],
                          env={**env, "PDP_DEV_TOKENS": "1"}, capture_output=True, text=True, cwd=tmp_path,
                          timeout=120)
    assert done.returncode == 0 and done.stdout.count(".") == 2


def test_pro_sante_connect_claims_map_to_a_professional() -> None:
    claims = {"sub": "psc-1", "SubjectNameID": "810001234567",
              "SubjectRefPro": {"exercices": [{"codeProfession": "10",
                                               "activities": [{"codeCommuneStructure": "59178"},
                                                              {"codeCommuneStructure": "75056"}]}]}}
    mapped = map_psc_claims(claims, {"59178": "douaisis"})
    assert mapped == {"sub": "psc-1", "pdp_role": "professional", "pdp_rpps": "10001234567",
                      "pdp_territories": ["douaisis"]}
    with pytest.raises(PscMappingError, match="onboarded"):
        map_psc_claims(claims, {"29232": "cornouaille"})
    with pytest.raises(PscMappingError, match="SubjectNameID"):
        map_psc_claims({**claims, "SubjectNameID": "0123"}, {"59178": "douaisis"})


def test_a_rejected_body_never_echoes_its_identity(light) -> None:
    client, signer, _ = light
    token = signer.mint(role="dmp", territories=["*"])
    body = {"nir": "2990599123456", "birth_name": "SECRETNAME", "first_names": ["X"], "sex": "Q",
            "birth_date": "1990-01-01"}
    response = client.post("/dmp/transparency", json=body,
                           headers={"Authorization": f"Bearer {token}", "X-Purpose": "citizen_information"})
    assert response.status_code == 422
    assert "SECRETNAME" not in response.text and "2990599123456" not in response.text
    assert {e["loc"][-1] for e in response.json()["detail"]} >= {"sex"}
    # a key the client typed is not quoted back either: it is shown as "?"
    typed = client.post("/dmp/transparency", json={**body, "sex": "F", "Jeanne DUPONT 0612345678": 1},
                        headers={"Authorization": f"Bearer {token}", "X-Purpose": "citizen_information"})
    assert typed.status_code == 422 and "DUPONT" not in typed.text
    assert [e["loc"] for e in typed.json()["detail"] if e["type"] == "extra_forbidden"] == [["body", "?"]]
    schema = client.get("/openapi.json").json()
    assert schema["components"]["securitySchemes"]["bearer"]["scheme"] == "bearer"
    assert "security" not in schema["paths"]["/healthz"]["get"]
    assert schema["paths"]["/siop/{territory}/worklist"]["get"]["security"] == [{"bearer": []}]


@pytest.mark.parametrize("name", ["pdp.api.psc", "pdp.api.cursor"])
def test_the_docstring_examples_run(name: str) -> None:
    import doctest
    import importlib

    assert doctest.testmod(importlib.import_module(name), optionflags=doctest.ELLIPSIS).failed == 0


PSC_ISSUER = "https://auth.esante.gouv.fr/auth/realms/esante-wallet"


def test_pro_sante_connect_tokens_are_verified_against_psc_and_mapped_to_a_professional(
    light, tmp_path: Path
) -> None:
    """A second trusted issuer: PSC's own keys, then the documented claim mapping (pdp/api/psc.py)."""
    from jwt.algorithms import ECAlgorithm

    _client, signer, settings = light
    psc_key = ec.generate_private_key(ec.SECP256R1())
    jwk = json.loads(ECAlgorithm.to_jwk(psc_key.public_key()))
    (tmp_path / "psc-jwks.json").write_text(json.dumps({"keys": [{**jwk, "kid": "psc-1", "alg": "ES256"}]}))
    (tmp_path / "communes.csv").write_text("commune,territory\n59178,douaisis\n")
    psc_settings = settings.model_copy(update={
        "psc_issuer": PSC_ISSUER, "psc_audience": "pdp-platform", "psc_jwks": str(tmp_path / "psc-jwks.json"),
        "psc_communes": tmp_path / "communes.csv"})
    client = TestClient(create_app(psc_settings), raise_server_exceptions=False)

    def psc_token(commune: str = "59178", key=psc_key, **over: object) -> str:
        now = int(time.time())
        claims = {"iss": PSC_ISSUER, "aud": "pdp-platform", "sub": "f:psc-42", "iat": now, "exp": now + 600,
                  "SubjectNameID": "810001234567",
                  "SubjectRefPro": {"exercices": [{"codeProfession": "10",
                                                   "activities": [{"codeCommuneStructure": commune}]}]}, **over}
        return jwt.encode(claims, key, algorithm="ES256", headers={"kid": "psc-1"})

    def definitions(token: str):
        return client.get(ROUTE, headers={"Authorization": f"Bearer {token}", "X-Purpose": "care_coordination"})

    assert definitions(psc_token()).status_code == 200
    refused = {
        "practice outside every onboarded territory": psc_token(commune="75056"),
        "not an RPPS holder": psc_token(SubjectNameID="0123"),
        "signed by another key": psc_token(key=ec.generate_private_key(ec.SECP256R1())),
        "wrong audience": psc_token(aud="someone-else"),
    }
    for case, token in refused.items():
        response = definitions(token)
        assert response.status_code == 401, case
        assert response.headers["WWW-Authenticate"].startswith("Bearer"), case
    assert "onboarded territory" in definitions(psc_token(commune="75056")).json()["detail"]
    # the platform's own issuer still works beside PSC
    assert definitions(signer.mint(role="siop_platform", territories=["douaisis"])).status_code == 200
    with pytest.raises(JwksError, match="PDP_PSC_ISSUER"):  # `pdp serve` prints it in one line
        create_app(settings.model_copy(update={"psc_issuer": PSC_ISSUER}))

"""The serving API's fixtures: one small synthetic territory through the real edge, lake and gold
(a copy of the session's `built_territory`: building it costs minutes of Spark), a dev signing
key and its JWKS, token factories.

Tests run the app in-process (FastAPI TestClient over httpx) against that lake: real Delta
reads (deltalake, no JVM), real JWT signatures, real authorisation, audit and opposition.
"""

from __future__ import annotations

import csv
import json
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from shared_territory import BUILT_AS_OF, copy_var, var_settings

AS_OF = BUILT_AS_OF
TERRITORY = "douaisis"
ISSUER = "https://auth.test.pdp"
AUDIENCE = "pdp-api-test"


@pytest.fixture(scope="session")
def api_var(built_territory: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The API's own copy of the session's built territory (its tests submit oppositions, write audit)."""
    return copy_var(built_territory, tmp_path_factory.mktemp("api var"))


@pytest.fixture(scope="session")
def api_settings(api_var: Path):
    return var_settings(api_var, oidc_issuer=ISSUER, oidc_audience=AUDIENCE, oidc_jwks=str(api_var / "jwks.json"),
                        dev_tokens=True, api_snapshot_check_seconds=0.0)


@pytest.fixture(scope="session")
def territory_sources(api_var: Path) -> Path:
    return api_var / "sources"


@pytest.fixture(scope="session")
def gold_lake(api_settings) -> Path:
    """The territory ingested, gold built at AS_OF and its indicators published (label 'Douaisis')."""
    return Path(api_settings.lake_uri)


@pytest.fixture(scope="session")
def identities(territory_sources: Path) -> dict[str, dict[str, str]]:
    """The generator's identities by person id (test side only: the API never reads them)."""
    with (territory_sources / "ground_truth" / "identities.csv").open(encoding="utf-8") as f:
        return {r["person_id"]: r for r in csv.DictReader(f)}


@pytest.fixture(scope="session")
def signer(api_settings):
    """The development signing key (ES256) and its JWKS at PDP_OIDC_JWKS, as `pdp token mint` makes them."""
    from pdp.api.devtokens import DevSigner

    return DevSigner.ensure(api_settings)


@pytest.fixture(scope="session")
def app(api_settings, gold_lake: Path, signer):
    from pdp.api import create_app

    return create_app(api_settings)


@pytest.fixture(scope="session")
def client(app) -> Iterator[Any]:
    from fastapi.testclient import TestClient

    with TestClient(app, raise_server_exceptions=False) as c:
        yield c


@pytest.fixture(scope="session")
def token(signer) -> Callable[..., str]:
    def make(role: str, territories: list[str] | None = None, *, rpps: str | None = None, **claims: Any) -> str:
        return signer.mint(role=role, territories=territories or [TERRITORY], rpps=rpps, **claims)

    return make


def headers(tok: str, purpose: str | None) -> dict[str, str]:
    h = {"Authorization": f"Bearer {tok}"}
    if purpose is not None:
        h["X-Purpose"] = purpose
    return h


def consent(identity: dict[str, str], *, status: str = "active") -> dict[str, Any]:
    """A Consent (deny) as the DMP sends it: the patient contained, with the INS (NIR + traits)."""
    return {
        "resourceType": "Consent", "status": status,
        "scope": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/consentscope",
                              "code": "patient-privacy"}]},
        "category": [{"coding": [{"system": "http://loinc.org", "code": "59284-0"}]}],
        "patient": {"reference": "#p"},
        "dateTime": "2026-07-01T10:00:00+02:00",
        "contained": [dict(patient(identity), id="p")],
        "provision": {"type": "deny"},
    }


def patient(identity: dict[str, str]) -> dict[str, Any]:
    """The FHIR Patient of an INS identity (NIR + traits)."""
    return {
        "resourceType": "Patient",
        "identifier": [{"system": "urn:oid:1.2.250.1.213.1.4.8", "value": identity["nir"]}],
        "name": [{"use": "official", "family": identity["birth_name"], "given": identity["first_names"].split()}],
        "gender": {"M": "male", "F": "female"}[identity["sex"]],
        "birthDate": identity["birth_date"],
    }


def as_json(data: Any) -> str:
    return json.dumps(data)


@pytest.fixture(scope="session")
def people(territory_sources: Path, identities: dict[str, dict[str, str]]) -> list[dict[str, str]]:
    """Alive persons with coded T2D whose NIR is their own (the INS keys them): identity + declared GP."""
    with (territory_sources / "ground_truth" / "persons.csv").open(encoding="utf-8") as f:
        truth = list(csv.DictReader(f))
    out = []
    for row in truth:
        ident = identities[row["person_id"]]
        if (row["t2d_coded"] == "1" and row["alive"] == "1" and row["gp_rpps"] and ident["nir"]
                and ident["nir"] == ident["insured_nir"] and row["t2d_stratum_coded"] in ("1", "2", "3", "4")):
            out.append({**ident, "gp_rpps": row["gp_rpps"]})
    assert len(out) >= 4, "the synthetic territory has too few coded T2D persons for the API tests"
    return out


def citizen(identity: dict[str, str]) -> dict[str, Any]:
    """The API's CitizenIdentity body of an identity."""
    return {"nir": identity["nir"], "birth_name": identity["birth_name"],
            "first_names": identity["first_names"].split(), "sex": identity["sex"],
            "birth_date": identity["birth_date"]}

"""Settings for every part of the platform, read once from the environment and `.env`.

Why one class: the lake, the governance store and the key store must agree on where they
live; scattering `os.environ` look-ups would let two parts disagree silently.
Defaults are embedded and local (under ``./var/``) so that a fresh clone runs as is;
production changes configuration, never code.
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path
from typing import Literal

from pydantic import Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict


class Settings(BaseSettings):
    """Every knob of the platform; each one maps to the env var ``PDP_<NAME>``."""

    model_config = SettingsConfigDict(env_prefix="PDP_", env_file=".env", env_file_encoding="utf-8", extra="forbid")

    var_dir: Path = Field(Path("./var"), description="Root of every local store (lake, db, keys).")
    lake_uri: str = Field("./var/lake", description="Root of the Delta lake: a local path or an object-store URI.")
    spark_master: str = Field("local[*]", description="Spark master URL: local[N] or spark://host:7077.")
    edge_engine: Literal["auto", "processes", "spark"] = Field(
        "auto",
        description="Where `pdp ingest` parses and pseudonymises: `processes` (worker processes on this machine), "
        "`spark` (one Spark task per file, on the executors), `auto` (spark when PDP_SPARK_MASTER is a cluster).",
    )
    edge_split_bytes: int = Field(
        64 << 20, ge=0,
        description="A file over this many bytes, of a format that can be cut on record boundaries (CSV, fixed "
        "width, NDJSON), runs as several edge tasks of about this size (processes or Spark); 0: one task a file.",
    )
    edge_identities: Literal["auto", "driver", "staged"] = Field(
        "auto",
        description="Where a batch's identities are folded for linkage and the vault: `driver` (in the ingest "
        "process's memory), `staged` (sealed Parquet parts folded on Spark, streamed to the vault: driver memory "
        "bounded by a chunk, not the batch), `auto`: staged for Spark edge tasks, or from "
        "PDP_EDGE_IDENTITIES_MIN_BYTES of input when Spark's workers can open the key store.",
    )
    edge_identities_min_bytes: int = Field(
        512 << 20, ge=0,
        description="`auto` stages the batch's identities from this many input bytes (about 45 000 persons of the "
        "demo's source mix; below, the fold's Spark jobs cost more than the driver memory they save).",
    )
    spark_driver_memory: str = Field("6g", description="Driver memory (local mode runs everything in the driver).")
    spark_shuffle_partitions: int = Field(8, ge=1, description="spark.sql.shuffle.partitions; small on 2 cores.")
    spark_delta_snapshot_partitions: int = Field(
        1, ge=1, description="Tasks Delta rebuilds a table's state from its log in; raise it for tables of"
        " many thousand files (a cluster's lake)."
    )
    spark_jars: str | None = Field(
        None, description="Comma-separated Delta jars; by default resolved from the local Maven repository."
    )
    maven_repo: Path = Field(Path.home() / ".m2" / "repository", description="Local Maven repository.")
    jvm_cache: Path = Field(
        Path.home() / ".cache" / "pdp" / "jvm",
        description="Where the project's own JVM classes (Spark UDFs) are compiled to a jar, once.",
    )
    spark_log_level: str = Field("ERROR", description="Spark log level (quiet by default).")
    spark_ui: bool = Field(False, description="Enable the Spark UI (off by default and in tests).")
    db_url: str = Field("sqlite:///./var/pdp.db", description="Governance store (SQLAlchemy URL).")
    audit_db_url: str | None = Field(
        None,
        description="Audit trail store (SQLAlchemy URL); default: the governance store. In production, its own "
        "database or schema with its own credentials.",
    )
    key_store: Path = Field(Path("./var/keys"), description="Directory of envelope-encrypted versioned keys.")
    master_key_file: Path | None = Field(
        None, description="File holding the master key (alternative to PDP_MASTER_KEY)."
    )
    master_key: SecretStr | None = Field(
        None, description="Master key, base64 of 32 random bytes (alternative to PDP_MASTER_KEY_FILE); never commit it."
    )
    kms: Literal["local", "pkcs11"] = Field(
        "local",
        description="What holds the master key: `local` (PDP_MASTER_KEY or PDP_MASTER_KEY_FILE) or `pkcs11` "
        "(a non-extractable key in an HSM/PKCS#11 token that wraps the data keys itself).",
    )
    pkcs11_module: Path | None = Field(
        None, description="PDP_KMS=pkcs11: the token's PKCS#11 library (e.g. /usr/lib/softhsm/libsofthsm2.so)."
    )
    pkcs11_token: str | None = Field(None, description="PDP_KMS=pkcs11: the token's label.")
    pkcs11_key_label: str = Field("pdp-master", description="PDP_KMS=pkcs11: label of the AES master key in the token.")
    pkcs11_pin: SecretStr | None = Field(
        None, description="PDP_KMS=pkcs11: the token's user PIN (alternative to PDP_PKCS11_PIN_FILE); never logged."
    )
    pkcs11_pin_file: Path | None = Field(
        None, description="PDP_KMS=pkcs11: file (mode 0600) holding the user PIN (alternative to PDP_PKCS11_PIN)."
    )
    linkage_model_dir: str | None = Field(
        None,
        description="Trained linkage models (`pdp linkage train`: versioned m/u files, no nominative value) and "
        "the pointer to the current one: a directory or an object-store URI every ingesting node reads "
        "(s3://bucket/pdp/linkage); default: <var_dir>/linkage.",
    )
    linkage_engine: Literal["auto", "memory", "spark"] = Field(
        "auto",
        description="Where an ingest links its batch: `memory` (Splink on in-process DuckDB, the driver holds the "
        "batch and its candidates), `spark` (pdp.pseudonym.linkage_spark: same decision as Spark jobs, driver "
        "memory bounded independently of the population), or `auto`: Spark from PDP_LINKAGE_SPARK_MIN_IDENTITIES.",
    )
    linkage_spark_min_identities: int = Field(
        200_000,
        ge=1,
        description="`auto` links on Spark when the batch's distinct identities plus the known persons it could "
        "join reach this (below, Spark's fixed cost of ~20 jobs outweighs the driver memory it saves).",
    )
    synth_chunk_persons: int = Field(2000, ge=100, description="Persons generated per chunk by `pdp synth`.")
    synth_workers: int = Field(0, ge=0, description="Generator worker processes (0 = one per core).")
    definitions_dir: Path | None = Field(
        None, description="Population definitions (criteria, populations, pyramids...); default: the package's own."
    )
    sources_dir: str | None = Field(
        None,
        description="Extra directories of source specs (*.yml), os.pathsep-separated (':' on Linux), read after "
        "the built-in pdp/ingest/sources (always included): a sender is added to an installed platform without "
        "editing the package. A spec name defined twice is an error.",
    )
    policy_dir: Path | None = Field(
        None, description="Authorisation model.conf + policy.csv (Casbin); default: the repository's infra/policy."
    )

    oidc_issuer: str | None = Field(
        None, description="Issuer (`iss`) the API accepts in bearer tokens; no default: the API will not start without."
    )
    oidc_audience: str | None = Field(
        None, description="Audience (`aud`) the API's tokens must name; no default: the API refuses to start without."
    )
    oidc_jwks: str | None = Field(
        None, description="The issuer's JWKS: a file path or an https URL (cached, re-read on an unknown `kid`)."
    )
    psc_issuer: str | None = Field(
        None, description="Pro Santé Connect's issuer: tokens from it are verified against PDP_PSC_JWKS and "
        "their claims mapped to a professional (pdp/api/psc.py); unset: PSC tokens are refused.")
    psc_audience: str | None = Field(None, description="The audience (client id) PSC tokens name for this platform.")
    psc_jwks: str | None = Field(None, description="PSC's JWKS: a file path or an https URL.")
    psc_communes: Path | None = Field(
        None, description="CSV `commune,territory` (INSEE code → onboarded territory) for PSC practice places.")
    dev_tokens: bool = Field(
        False, description="Development only: allow `pdp token mint` (a local ES256 key under var/api/)."
    )
    api_snapshot_check_seconds: float = Field(
        2.0, ge=0, description="How often the API looks for a new gold version (0: on every request)."
    )

    def source_dirs(self) -> list[Path]:
        """The extra spec directories of ``sources_dir``, in order (empty entries ignored)."""
        import os

        return [Path(part).expanduser() for part in (self.sources_dir or "").split(os.pathsep) if part.strip()]

    @field_validator("master_key", "master_key_file", "pkcs11_pin", "pkcs11_pin_file", "linkage_model_dir",
                     mode="before")
    @classmethod
    def _empty_is_unset(cls, value: object) -> object:
        """`PDP_MASTER_KEY_FILE=` (an empty line of .env) means unset, not the current directory."""
        return None if isinstance(value, str) and not value.strip() else value

    @field_validator("spark_log_level")
    @classmethod
    def _known_level(cls, value: str) -> str:
        levels = {"ALL", "DEBUG", "INFO", "WARN", "ERROR", "FATAL", "OFF"}
        if value.upper() not in levels:
            raise ValueError(f"spark_log_level must be one of {sorted(levels)}")
        return value.upper()


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    """The process-wide settings (cached: read the environment once)."""
    return Settings()

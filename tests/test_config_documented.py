"""Every setting is documented where operators look: the README's table and infra/env.example."""

from __future__ import annotations

from pathlib import Path

from pdp.config import Settings

_REPO = Path(__file__).resolve().parent.parent


def test_every_setting_is_in_the_readme_and_the_env_example() -> None:
    readme = (_REPO / "README.md").read_text(encoding="utf-8")
    example = (_REPO / "infra" / "env.example").read_text(encoding="utf-8")
    names = [f"PDP_{name.upper()}" for name in Settings.model_fields]
    assert names, "Settings has fields"
    assert [n for n in names if f"`{n}`" not in readme] == [], "settings missing from the README table"
    assert [n for n in names if n not in example] == [], "settings missing from infra/env.example"


def test_an_empty_secret_setting_is_unset(monkeypatch) -> None:  # type: ignore[no-untyped-def]
    """`PDP_PKCS11_PIN_FILE=` in a .env means no file (not the current directory, not "both set")."""
    for name in ("PDP_MASTER_KEY", "PDP_MASTER_KEY_FILE", "PDP_PKCS11_PIN", "PDP_PKCS11_PIN_FILE"):
        monkeypatch.setenv(name, "")
    settings = Settings(_env_file=None)
    assert (settings.master_key, settings.master_key_file, settings.pkcs11_pin, settings.pkcs11_pin_file) == (
        None, None, None, None)
    monkeypatch.setenv("PDP_PKCS11_PIN_FILE", "/run/secrets/pin")
    assert str(Settings(_env_file=None).pkcs11_pin_file) == "/run/secrets/pin"

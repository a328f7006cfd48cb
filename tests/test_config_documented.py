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

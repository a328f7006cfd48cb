"""No module but the listed ones decrypts the identity vault (issue: one audited way into the vault).

Every vault operation that decrypts a record is a method of `IdentityVault`; this test finds,
in every module of `pdp/`, the calls of those methods and the direct uses of the vault's
ciphertext, and compares them with the list the README gives, with why each exists. A new
call elsewhere fails here until it is justified in both places.
"""

from __future__ import annotations

import ast
from pathlib import Path

PDP = Path(__file__).resolve().parents[2] / "pdp"
README = Path(__file__).resolve().parents[2] / "README.md"

# The methods of IdentityVault that decrypt records (upsert merges with the stored record).
DECRYPTING = {"get_many", "linkable", "upsert", "upsert_many", "repseudonymise", "rekey", "_read"}

# module → the decrypting methods it may call, and why (the README's list).
ALLOWED = {
    "pdp/pseudonym/reidentify.py": {"get_many"},  # re-identification: authorise → opposition → vault → audit
    "pdp/pseudonym/rotation.py": {"get_many", "repseudonymise"},  # key rotation re-keys from the canonical
    "pdp/ingest/pipeline.py": {"upsert_many", "linkable", "repseudonymise"},  # edge: merge, linkage, relink
    "pdp/ingest/fast_path.py": {"upsert_many"},  # the lab feed's edge (linkage goes through pipeline)
    "pdp/governance/opposition/service.py": {"linkable"},  # an opposition's identity → the person's pseudonym
}


def calls() -> dict[str, set[str]]:
    found: dict[str, set[str]] = {}
    for path in sorted(PDP.rglob("*.py")):
        rel = path.relative_to(PDP.parent).as_posix()
        if rel == "pdp/pseudonym/vault.py":
            continue
        tree = ast.parse(path.read_text(encoding="utf-8"))
        for node in ast.walk(tree):
            if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr in DECRYPTING:
                found.setdefault(rel, set()).add(node.func.attr)
            if isinstance(node, ast.ImportFrom) and node.module == "pdp.pseudonym.vault":
                private = {a.name for a in node.names} & {"identity_vault", "_Keys", "VAULT_KEY_PURPOSE"}
                if private:
                    found.setdefault(rel, set()).update(f"import {n}" for n in private)
            if isinstance(node, ast.Constant) and node.value in ("ciphertext", "get_many"):
                found.setdefault(rel, set()).add(f"string {node.value}")
            if isinstance(node, ast.Attribute) and node.attr in ("ciphertext", "nonce") and isinstance(
                    node.value, ast.Attribute) and node.value.attr == "c":
                found.setdefault(rel, set()).add(f"identity_vault.c.{node.attr}")
    return found


def test_only_the_listed_modules_decrypt_the_vault() -> None:
    assert calls() == ALLOWED


def test_the_readme_lists_every_decryption_path() -> None:
    text = README.read_text(encoding="utf-8")
    section = text[text.index("### Ways into the vault"):]
    for module in ALLOWED:
        assert f"`{module}`" in section, module
    assert "leak scanner" in section and "nametoken" in section


def test_the_leak_scanner_reads_no_identity() -> None:
    source = (PDP / "governance" / "leak_scan.py").read_text(encoding="utf-8")
    assert "get_many" not in source and "name_token_index" in source

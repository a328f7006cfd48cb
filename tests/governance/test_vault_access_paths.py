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

# The methods of IdentityVault that decrypt something: ``get_many``, ``compact`` and ``reseal``
# open sealed records (private seal key); the others read the linkage view (the edge's ``vault`` key).
DECRYPTING = {"get_many", "compact", "reseal", "linkage_view", "linkable", "known_chunks", "known_by_blocks", "upsert",
              "upsert_many", "write_prepared", "repseudonymise", "rekey", "_read", "_open"}
OPENING = {"get_many", "compact", "reseal"}
# The vault itself and the key machinery it is built on.
KEY_MODULES = ("pdp/pseudonym/vault.py", "pdp/pseudonym/keys.py", "pdp/pseudonym/sealing.py")
# Modules that build a vault able to open sealed records, to hand it to reidentify.
SERVING: tuple[str, ...] = ("pdp/api/context.py", "pdp/api/app.py")
# The vault benchmark measures re-identification's read, on a store and keys it makes and deletes.
BENCH = ("pdp/bench/vault.py",)

# module → the decrypting methods it may call, and why (the README's list).
ALLOWED = {
    "pdp/pseudonym/reidentify.py": {"get_many"},  # re-identification: authorise → opposition → vault → audit
    "pdp/pseudonym/rotation.py": {"linkage_view", "repseudonymise"},  # key rotation re-keys from the canonical
    "pdp/pseudonym/linkage_trained.py": {"linkage_view"},  # `pdp linkage train`: a sample of known persons
    # the edge (batch ingest and the lab feed, one pipeline): sealing; linkage and re-keying known persons
    "pdp/ingest/pipeline.py": {"upsert_many", "write_prepared"},
    "pdp/ingest/linking.py": {"linkable", "known_chunks", "repseudonymise"},
    # the edge as Spark tasks: a file's identities sealed to the driver's per-batch key pair (not the vault's)
    "pdp/ingest/spark_tasks.py": {"import seal", "import Opener"},
    # a staged batch's vault writes made ready on the executors: it carries their ciphertexts, never opens them
    "pdp/ingest/identity_stage.py": {"string ciphertext"},
    # the edge's text de-identification: the linkage view's names/NIR of a report's known person
    "pdp/ingest/known.py": {"linkage_view"},
    "pdp/governance/opposition/service.py": {"linkable"},  # an opposition's identity → the person's pseudonym
    # PSI: a registry's members → their canonical identity items
    "pdp/pseudonym/psi/service.py": {"linkage_view"},
    "pdp/api/app.py": {"compact"},  # serving start-up folds the new boxes into re-identification's cache
    "pdp/bench/api.py": {"upsert_many"},  # `pdp bench api` seals its private lake's identities as the edge does
    # `pdp bench vault`: a throwaway store and keys
    "pdp/bench/vault.py": {"upsert_many", "write_prepared", "get_many", "repseudonymise", "import seal", "string seal"},
    "pdp/bench/rotation.py": {"upsert_many"},  # `pdp bench rotate`: fills a throwaway vault to rotate
}


def calls() -> dict[str, set[str]]:
    found: dict[str, set[str]] = {}
    for path in sorted(PDP.rglob("*.py")):
        rel = path.relative_to(PDP.parent).as_posix()
        if rel in KEY_MODULES:
            continue
        tree = ast.parse(path.read_text(encoding="utf-8"))
        for node in ast.walk(tree):
            if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr in DECRYPTING:
                found.setdefault(rel, set()).add(node.func.attr)
            if isinstance(node, ast.ImportFrom) and node.module == "pdp.pseudonym.vault":
                private = {a.name for a in node.names} & {
                    "identity_vault", "identity_vault_seal", "identity_vault_merged", "_Keys", "VAULT_KEY_PURPOSE",
                    "SEAL_KEY_PURPOSE", "SERVING_KEY_PURPOSE"}
                if private:
                    found.setdefault(rel, set()).update(f"import {n}" for n in private)
            if isinstance(node, ast.ImportFrom) and node.module == "pdp.pseudonym.sealing":
                found.setdefault(rel, set()).update(f"import {a.name}" for a in node.names)
            if isinstance(node, ast.Constant) and node.value in ("ciphertext", "get_many", "seal", "serving"):
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


def test_only_re_identification_opens_sealed_records() -> None:
    """Every module but reidentify that builds a vault builds it through EdgeKeys (no private seal key)."""
    openers = {module for module, methods in calls().items() if methods & OPENING}
    assert openers <= {"pdp/pseudonym/reidentify.py", *SERVING, *BENCH}
    assert "pdp/pseudonym/reidentify.py" in openers
    for path in sorted(PDP.rglob("*.py")):
        module = path.relative_to(PDP.parent).as_posix()
        if module in ("pdp/pseudonym/vault.py", *SERVING, *BENCH):
            continue
        tree = ast.parse(path.read_text(encoding="utf-8"))
        for node in ast.walk(tree):
            if isinstance(node, ast.Call) and getattr(node.func, "id", None) == "IdentityVault":
                assert ast.unparse(node.args[1]).startswith("EdgeKeys("), (module, ast.unparse(node))


def test_the_edge_opens_its_vault_through_edge_keys() -> None:
    cli = (PDP / "cli.py").read_text(encoding="utf-8")
    assert "IdentityVault.from_settings(edge=True)" in cli
    for path in sorted(PDP.rglob("*.py")):
        module = path.relative_to(PDP.parent).as_posix()
        if module in ("pdp/pseudonym/vault.py", *SERVING, *BENCH):
            continue
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if not (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)):
                continue
            if node.func.attr == "from_settings" and ast.unparse(node.func.value).endswith("IdentityVault"):
                assert any(k.arg == "edge" and ast.unparse(k.value) == "True" for k in node.keywords), module
            if node.func.attr == "IdentityVault":
                raise AssertionError(f"{module}: build the vault as IdentityVault(engine, EdgeKeys(store))")

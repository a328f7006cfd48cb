"""The master key in a PKCS#11 token (PDP_KMS=pkcs11), proved against a real SoftHSM2 token.

One token per run, initialised in a private directory (SOFTHSM2_CONF points at it) with a random
PIN; each test has its own key label and key directory. SoftHSM2 comes from
`bash infra/setup/softhsm.sh` (run by `make test`, and by the fixture): without it these tests
fail, never skip — CI must prove the HSM path, like the PostgreSQL and Chromium ones.
"""

from __future__ import annotations

import base64
import json
import os
import secrets
import subprocess
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import date
from pathlib import Path
from typing import Any

import pytest

from pdp.config import Settings, get_settings
from pdp.pseudonym.hsm import Pkcs11MasterKey, create_pkcs11_master_key
from pdp.pseudonym.keys import KeyStore, KeyStoreError
from pdp.pseudonym.kms import UnwrapError
from pdp.pseudonym.normalise import CanonicalIdentity, RawIdentity, normalise
from pdp.pseudonym.pseudonymise import Pseudonymiser

_REPO = Path(__file__).resolve().parents[2]
TOKEN = "pdp-test"


@dataclass(frozen=True)
class Hsm:
    module: Path
    token: str
    pin: str


@pytest.fixture(scope="session")
def hsm(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Hsm]:
    """A SoftHSM2 token in a private directory, for the whole run (the module reads its config once)."""
    script = _REPO / "infra" / "setup" / "softhsm.sh"
    result = subprocess.run(["bash", str(script)], capture_output=True, text=True, timeout=900, check=False)
    if result.returncode != 0 or not result.stdout.strip():
        pytest.fail(f"SoftHSM2: {script.name} failed (exit {result.returncode}): {result.stderr.strip()}",
                    pytrace=False)
    module = Path(result.stdout.strip().splitlines()[-1])
    root = tmp_path_factory.mktemp("softhsm")
    (root / "tokens").mkdir()
    conf = root / "softhsm2.conf"
    conf.write_text(f"directories.tokendir = {root / 'tokens'}\nobjectstore.backend = file\nlog.level = ERROR\n")
    before = os.environ.get("SOFTHSM2_CONF")
    os.environ["SOFTHSM2_CONF"] = str(conf)
    pin = secrets.token_hex(8)
    init = subprocess.run(
        ["softhsm2-util", "--init-token", "--free", "--label", TOKEN, "--so-pin", secrets.token_hex(8), "--pin", pin],
        capture_output=True, text=True, timeout=60, check=False,
    )
    if init.returncode != 0:
        pytest.fail(f"SoftHSM2: softhsm2-util --init-token failed: {init.stderr.strip()}", pytrace=False)
    yield Hsm(module, TOKEN, pin)
    if before is None:
        os.environ.pop("SOFTHSM2_CONF", None)
    else:
        os.environ["SOFTHSM2_CONF"] = before


SettingsFactory = Callable[..., Settings]


@pytest.fixture()
def hsm_settings(hsm: Hsm, tmp_path: Path) -> SettingsFactory:
    """Settings for PDP_KMS=pkcs11 with this test's own key label; any field can be overridden."""
    label = f"pdp-master-{secrets.token_hex(4)}"

    def factory(**overrides: Any) -> Settings:
        fields: dict[str, Any] = {
            "key_store": tmp_path / "keys", "kms": "pkcs11", "pkcs11_module": hsm.module, "pkcs11_token": hsm.token,
            "pkcs11_key_label": label, "pkcs11_pin": hsm.pin, "master_key": None, "master_key_file": None,
        }
        return Settings(_env_file=None, **(fields | overrides))

    return factory


def canon() -> CanonicalIdentity:
    raw = RawIdentity(birth_name="LEFEVRE", first_names="Jean", sex="M", birth_date="1980-05-12")
    result = normalise(raw, today=date(2025, 6, 1))
    assert isinstance(result, CanonicalIdentity)
    return result


def one_line_error(call: Callable[[], object], *, pin: str) -> str:
    """The KeyStoreError message of `call`, checked to be one line without the PIN."""
    with pytest.raises(KeyStoreError) as caught:
        call()
    message = str(caught.value)
    assert "\n" not in message and pin not in message and pin not in repr(caught.value)
    # no PKCS#11 exception chained under it (a traceback shows only this line)
    assert caught.value.__cause__ is None and (caught.value.__context__ is None or caught.value.__suppress_context__)
    return message


def token_session(hsm: Hsm) -> Any:
    """A logged-in session of the test token (close it before the code under test logs in)."""
    import pkcs11

    return pkcs11.lib(str(hsm.module)).get_token(token_label=hsm.token).open(user_pin=hsm.pin, rw=True)


def hsm_key(session: Any, label: str) -> Any:
    import pkcs11

    return session.get_key(object_class=pkcs11.ObjectClass.SECRET_KEY, key_type=pkcs11.KeyType.AES, label=label)


# --- the store through the HSM -------------------------------------------------------------------


def test_a_store_made_through_the_hsm_reopens_with_the_same_keys(hsm_settings: SettingsFactory) -> None:
    settings = hsm_settings()
    kek = create_pkcs11_master_key(settings)
    assert kek.created and kek.kek_id == f"pkcs11:{TOKEN}/{settings.pkcs11_key_label}"
    assert not create_pkcs11_master_key(settings).created  # once: the second call reuses it

    store = KeyStore.from_settings(settings)
    store.init()
    pseudonym = Pseudonymiser(store).pseudonym(canon())
    materials = {p: store.current(p).material for p in ("pseudonym", "vault", "record")}

    reopened = KeyStore.from_settings(settings)
    assert Pseudonymiser(reopened).pseudonym(canon()) == pseudonym
    assert {p: reopened.current(p).material for p in materials} == materials
    for path in settings.key_store.glob("*.json"):
        assert json.loads(path.read_text())["kek"] == kek.kek_id
    assert repr(reopened) == f"KeyStore(directory={str(settings.key_store)!r}, master_key={kek.kek_id!r})"


def test_the_master_key_cannot_be_read_out_of_the_token(hsm: Hsm, hsm_settings: SettingsFactory) -> None:
    import pkcs11

    settings = hsm_settings()
    create_pkcs11_master_key(settings)
    with token_session(hsm) as session:
        key = hsm_key(session, settings.pkcs11_key_label)
        with pytest.raises(pkcs11.AttributeSensitive):
            key[pkcs11.Attribute.VALUE]
        assert key[pkcs11.Attribute.EXTRACTABLE] is False and key[pkcs11.Attribute.NEVER_EXTRACTABLE] is True
        assert key[pkcs11.Attribute.SENSITIVE] is True and key[pkcs11.Attribute.TOKEN] is True


def test_wrapped_bytes_bind_their_associated_data(hsm_settings: SettingsFactory) -> None:
    kek = create_pkcs11_master_key(hsm_settings())
    material = os.urandom(32)
    wrapped = kek.wrap(material, aad=b"pdp-key/1\x1fpseudonym\x1f1")
    assert len(wrapped) == 12 + 32 + 16 and material not in wrapped
    assert kek.unwrap(wrapped, aad=b"pdp-key/1\x1fpseudonym\x1f1") == material
    with pytest.raises(UnwrapError, match=r"^master key does not open the key store$"):
        kek.unwrap(wrapped, aad=b"pdp-key/1\x1fpseudonym\x1f2")  # another version's AAD
    tampered = bytearray(wrapped)
    tampered[20] ^= 1
    with pytest.raises(UnwrapError):
        kek.unwrap(bytes(tampered), aad=b"pdp-key/1\x1fpseudonym\x1f1")
    with pytest.raises(UnwrapError, match="truncated"):
        kek.unwrap(wrapped[:20], aad=b"pdp-key/1\x1fpseudonym\x1f1")
    assert kek.unwrap(wrapped, aad=b"pdp-key/1\x1fpseudonym\x1f1") == material  # a failure leaves the token usable


def test_an_altered_key_file_does_not_open(hsm: Hsm, hsm_settings: SettingsFactory) -> None:
    settings = hsm_settings()
    create_pkcs11_master_key(settings)
    KeyStore.from_settings(settings).init()
    path = settings.key_store / "pseudonym-v1.json"
    record = json.loads(path.read_text())
    wrapped = bytearray(base64.b64decode(record["wrapped"]))
    wrapped[-1] ^= 1
    record["wrapped"] = base64.b64encode(bytes(wrapped)).decode("ascii")
    path.write_text(json.dumps(record))
    message = one_line_error(lambda: KeyStore.from_settings(settings), pin=hsm.pin)
    assert message == "master key does not open the key store"


def test_another_key_under_the_same_label_does_not_open_the_store(hsm: Hsm, hsm_settings: SettingsFactory) -> None:
    """The label is recreated (same kek_id), the key is not the same: unwrapping fails, never returns garbage."""
    settings = hsm_settings()
    create_pkcs11_master_key(settings)
    KeyStore.from_settings(settings).init()
    with token_session(hsm) as session:
        hsm_key(session, settings.pkcs11_key_label).destroy()
    assert create_pkcs11_master_key(settings).created
    message = one_line_error(lambda: KeyStore.from_settings(settings), pin=hsm.pin)
    assert message == "master key does not open the key store"


def test_a_key_that_could_be_extracted_is_refused(hsm: Hsm, hsm_settings: SettingsFactory) -> None:
    """A key someone made by hand with CKA_EXTRACTABLE is not a master key: its value could leave the token."""
    import pkcs11

    settings = hsm_settings()
    with token_session(hsm) as session:
        session.generate_key(pkcs11.KeyType.AES, 256, label=settings.pkcs11_key_label, store=True,
                             template={pkcs11.Attribute.EXTRACTABLE: True, pkcs11.Attribute.SENSITIVE: True})
    message = one_line_error(lambda: KeyStore.from_settings(settings), pin=hsm.pin)
    assert message.startswith(f"PKCS#11 key '{settings.pkcs11_key_label}' in token '{TOKEN}' can be extracted")
    assert not settings.key_store.exists()


def test_the_audit_signing_keys_are_wrapped_by_the_hsm_too(hsm_settings: SettingsFactory) -> None:
    """PDP_KMS applies to every key the store directory holds, the audit log's signing key included."""
    from pdp.governance.audit.signing import AuditSigningKeys

    settings = hsm_settings()
    kek = create_pkcs11_master_key(settings)
    signer = AuditSigningKeys.from_settings(settings).ensure()
    reopened = AuditSigningKeys.from_settings(settings)
    assert f"master_key={kek.kek_id!r}" in repr(reopened)
    reopened.public_keys()[signer.key_id].verify(signer.sign(b"tree head"), b"tree head")
    assert reopened.ensure().key_id == signer.key_id


# --- a store wrapped by one master key is not read with another ------------------------------------


def test_a_store_wrapped_by_the_local_key_is_refused_by_the_hsm(hsm: Hsm, hsm_settings: SettingsFactory) -> None:
    local = hsm_settings(kms="local", master_key=base64.b64encode(os.urandom(32)).decode("ascii"))
    KeyStore.from_settings(local).init()
    settings = hsm_settings()
    create_pkcs11_master_key(settings)
    message = one_line_error(lambda: KeyStore.from_settings(settings), pin=hsm.pin)
    assert "was wrapped by 'local:aes-256-gcm'" in message
    assert f"not by the configured master key 'pkcs11:{TOKEN}/{settings.pkcs11_key_label}'" in message


def test_a_store_wrapped_by_the_hsm_is_refused_by_the_local_key(hsm: Hsm, hsm_settings: SettingsFactory) -> None:
    settings = hsm_settings()
    create_pkcs11_master_key(settings)
    KeyStore.from_settings(settings).init()
    local = hsm_settings(kms="local", master_key=base64.b64encode(os.urandom(32)).decode("ascii"))
    message = one_line_error(lambda: KeyStore.from_settings(local), pin=hsm.pin)
    assert f"was wrapped by 'pkcs11:{TOKEN}/{settings.pkcs11_key_label}'" in message


def test_another_key_label_is_another_master_key(hsm: Hsm, hsm_settings: SettingsFactory) -> None:
    settings = hsm_settings()
    create_pkcs11_master_key(settings)
    KeyStore.from_settings(settings).init()
    other = hsm_settings(pkcs11_key_label=f"{settings.pkcs11_key_label}-other")
    create_pkcs11_master_key(other)
    message = one_line_error(lambda: KeyStore.from_settings(other), pin=hsm.pin)
    assert "was wrapped by" in message and other.pkcs11_key_label in message


# --- misconfiguration: one line naming what is wrong, never the PIN --------------------------------


def test_a_wrong_pin_is_one_line_without_the_pin(hsm: Hsm, hsm_settings: SettingsFactory) -> None:
    settings = hsm_settings()
    create_pkcs11_master_key(settings)
    wrong = "not-the-pin-" + secrets.token_hex(4)
    message = one_line_error(lambda: KeyStore.from_settings(hsm_settings(pkcs11_pin=wrong)), pin=wrong)
    assert message == f"PKCS#11 token '{TOKEN}': wrong user PIN (PDP_PKCS11_PIN or PDP_PKCS11_PIN_FILE)"


@pytest.mark.parametrize(
    ("override", "expected"),
    [
        ({"pkcs11_module": Path("/nonexistent/lib.so")}, "PKCS#11 module /nonexistent/lib.so does not exist"),
        ({"pkcs11_module": Path(__file__)}, f"PKCS#11 module {__file__} cannot be loaded"),
        ({"pkcs11_module": None}, "PDP_KMS=pkcs11 needs PDP_PKCS11_MODULE"),
        ({"pkcs11_token": "no-such-token"}, "PKCS#11 token 'no-such-token' not found"),
        ({"pkcs11_token": None}, "PDP_KMS=pkcs11 needs PDP_PKCS11_TOKEN"),
        ({"pkcs11_key_label": "no-such-key"}, "PKCS#11 token 'pdp-test' has no AES key labelled 'no-such-key'"),
        ({"pkcs11_pin": None}, "PDP_KMS=pkcs11 needs the token's user PIN"),
        ({"master_key": base64.b64encode(os.urandom(32)).decode()}, "PDP_KMS=pkcs11 but PDP_MASTER_KEY"),
    ],
    ids=["module-missing", "module-not-pkcs11", "module-unset", "token-not-found", "token-unset", "key-missing",
         "pin-unset", "local-key-also-set"],
)
def test_a_misconfiguration_is_one_line_naming_it(
    hsm: Hsm, hsm_settings: SettingsFactory, override: dict[str, Any], expected: str
) -> None:
    message = one_line_error(lambda: KeyStore.from_settings(hsm_settings(**override)), pin=hsm.pin)
    assert message.startswith(expected), message


def test_the_pin_file_must_be_private(hsm: Hsm, hsm_settings: SettingsFactory, tmp_path: Path) -> None:
    settings = hsm_settings()
    create_pkcs11_master_key(settings)
    pin_file = tmp_path / "pin"
    pin_file.write_text(hsm.pin + "\n")
    pin_file.chmod(0o644)
    from_file = hsm_settings(pkcs11_pin=None, pkcs11_pin_file=pin_file)
    assert "accessible to other users" in one_line_error(lambda: KeyStore.from_settings(from_file), pin=hsm.pin)
    pin_file.chmod(0o600)
    KeyStore.from_settings(from_file).init()
    both = hsm_settings(pkcs11_pin_file=pin_file)
    assert "keep only one" in one_line_error(lambda: KeyStore.from_settings(both), pin=hsm.pin)


def test_no_pin_and_no_key_material_in_a_repr(hsm: Hsm, hsm_settings: SettingsFactory) -> None:
    settings = hsm_settings()
    kek = create_pkcs11_master_key(settings)
    assert repr(kek) == str(kek) == f"Pkcs11MasterKey(kek_id='pkcs11:{TOKEN}/{settings.pkcs11_key_label}')"
    assert hsm.pin not in repr(vars(kek).get("_token")) and hsm.pin not in repr(settings)
    from pdp.pseudonym import Pkcs11MasterKey as exported

    assert exported is Pkcs11MasterKey and isinstance(kek, Pkcs11MasterKey)


# --- the command a deployer runs once ---------------------------------------------------------------


def test_keys_init_creates_the_hsm_key_then_the_store(
    hsm: Hsm, hsm_settings: SettingsFactory, pdp_var: Path, tmp_path: Path,
    pdp_cli: Callable[..., tuple[int, str, str]], monkeypatch: pytest.MonkeyPatch,
) -> None:
    settings = hsm_settings()
    pin_file = tmp_path / "pin"
    pin_file.write_text(hsm.pin)
    pin_file.chmod(0o600)
    for name, value in {
        "PDP_KMS": "pkcs11", "PDP_PKCS11_MODULE": str(hsm.module), "PDP_PKCS11_TOKEN": hsm.token,
        "PDP_PKCS11_KEY_LABEL": settings.pkcs11_key_label, "PDP_PKCS11_PIN_FILE": str(pin_file),
        "PDP_KEY_STORE": str(settings.key_store),
    }.items():
        monkeypatch.setenv(name, value)
    for name in ("PDP_MASTER_KEY", "PDP_MASTER_KEY_FILE", "PDP_PKCS11_PIN"):
        monkeypatch.delenv(name, raising=False)
    get_settings.cache_clear()
    try:
        code, out, err = pdp_cli("keys", "init")
        assert code != 0 and "has no AES key labelled" in err + out  # the HSM key is created only on request
        code, out, err = pdp_cli("keys", "init", "--create-hsm-key")
        assert code == 0, err
        assert f"HSM master key pkcs11:{TOKEN}/{settings.pkcs11_key_label}: created" in out
        assert "key store initialised" in out and hsm.pin not in out + err
        code, out, err = pdp_cli("keys", "status")
        assert code == 0, err
    finally:
        get_settings.cache_clear()
    assert Pseudonymiser(KeyStore.from_settings(settings)).pseudonym(canon()).startswith("v1:")

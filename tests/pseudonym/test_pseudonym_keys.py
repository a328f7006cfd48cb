"""The key store: versioned data keys wrapped by a master key, failing closed.

Each test has its own directory and a random master key from ``os.urandom``: no key is
written in the code, and no test can read another's keys.
"""

from __future__ import annotations

import base64
import json
import os
import stat
from collections.abc import Callable
from pathlib import Path

import pytest

from pdp.config import Settings, get_settings
from pdp.pseudonym.keys import DataKey, KeyInfo, KeyStore, KeyStoreError, keys_init, keys_rotate, keys_status
from pdp.pseudonym.kms import KeyEncryptionService, LocalMasterKey, MasterKeyError, create_master_key_file

SettingsFactory = Callable[..., Settings]


def _random_master_key() -> str:
    return base64.b64encode(os.urandom(32)).decode("ascii")


@pytest.fixture()
def new_master_key() -> Callable[[], str]:
    """A fresh random master key (base64 of 32 bytes) at each call."""
    return _random_master_key


@pytest.fixture()
def make_settings() -> SettingsFactory:
    """Settings for a key directory and a master key; ignores any .env so tests are hermetic."""

    def factory(key_dir: Path, master_key: str | None, *, master_key_file: Path | None = None) -> Settings:
        return Settings(_env_file=None, key_store=key_dir, master_key=master_key, master_key_file=master_key_file)

    return factory


@pytest.fixture()
def master_key() -> str:
    return _random_master_key()


@pytest.fixture()
def key_dir(tmp_path: Path) -> Path:
    return tmp_path / "keys"


@pytest.fixture()
def settings(make_settings: SettingsFactory, key_dir: Path, master_key: str) -> Settings:
    return make_settings(key_dir, master_key)


@pytest.fixture()
def store(settings: Settings) -> KeyStore:
    """An initialised key store (pseudonym v1, vault v1)."""
    key_store = KeyStore.from_settings(settings)
    key_store.init()
    return key_store


def snapshot(directory: Path) -> dict[str, tuple[bytes, int]]:
    """Every file of a directory with its bytes and modification time (to prove nothing changed)."""
    if not directory.exists():
        return {}
    return {p.name: (p.read_bytes(), p.stat().st_mtime_ns) for p in sorted(directory.iterdir())}


def encodings(material: bytes) -> list[bytes]:
    """The ways raw key bytes could leak into a file or a text."""
    return [
        material,
        material.hex().encode(),
        material.hex().upper().encode(),
        base64.b64encode(material),
        base64.urlsafe_b64encode(material),
        base64.b64encode(material).rstrip(b"="),
        repr(material).encode(),
    ]


# --- init ---------------------------------------------------------------------------------


def test_init_creates_version_1_of_each_purpose_in_a_private_directory(store: KeyStore, key_dir: Path) -> None:
    assert [(i.purpose, i.version, i.status) for i in store.status()] == [
        ("pseudonym", 1, "current"),
        ("vault", 1, "current"),
        ("record", 1, "current"),
        ("nametoken", 1, "current"),
        ("opposition", 1, "current"),
        ("seal", 1, "current"),
        ("serving", 1, "current"),
        ("psi", 1, "current"),
    ]
    assert sorted(p.name for p in key_dir.iterdir()) == [
        "nametoken-v1.json", "opposition-v1.json", "pseudonym-v1.json", "psi-v1.json", "record-v1.json",
        "seal-v1.json", "serving-v1.json", "vault-v1.json"]
    assert stat.S_IMODE(key_dir.stat().st_mode) == 0o700
    for path in key_dir.iterdir():
        assert stat.S_IMODE(path.stat().st_mode) == 0o600
    pseudonym_key, vault_key = store.current("pseudonym"), store.current("vault")
    assert len(pseudonym_key.material) == len(vault_key.material) == 32
    assert pseudonym_key.material != vault_key.material


def test_a_second_init_is_refused_and_changes_nothing(store: KeyStore, key_dir: Path) -> None:
    before = snapshot(key_dir)
    with pytest.raises(KeyStoreError, match="already initialised"):
        store.init()
    assert snapshot(key_dir) == before


def test_keys_survive_reopening_the_store(store: KeyStore, settings: Settings) -> None:
    again = KeyStore.from_settings(settings)
    assert again.current("pseudonym") == store.current("pseudonym")
    assert again.current("vault").material == store.current("vault").material


def test_an_uninitialised_store_says_so(settings: Settings, key_dir: Path) -> None:
    fresh = KeyStore.from_settings(settings)
    assert fresh.status() == []
    with pytest.raises(KeyStoreError, match="not initialised"):
        fresh.current("pseudonym")
    assert not key_dir.exists()


# --- the master key fails closed ----------------------------------------------------------


def test_a_missing_master_key_is_a_clear_error_and_nothing_is_written(
    make_settings: Callable[..., Settings], key_dir: Path
) -> None:
    with pytest.raises(KeyStoreError, match="no master key"):
        keys_init(make_settings(key_dir, None))
    assert not key_dir.exists()


def test_a_wrong_master_key_does_not_open_the_store_and_changes_nothing(
    store: KeyStore, make_settings: Callable[..., Settings], key_dir: Path, new_master_key: Callable[[], str]
) -> None:
    before = snapshot(key_dir)
    wrong = make_settings(key_dir, new_master_key())
    for attempt in (KeyStore.from_settings, keys_status, keys_init, lambda s: keys_rotate(s, "pseudonym")):
        with pytest.raises(KeyStoreError, match=r"^master key does not open the key store$"):
            attempt(wrong)
    assert snapshot(key_dir) == before


@pytest.mark.parametrize(
    ("why", "value", "message"),
    [
        ("not base64", "this is not base64 at all!", "not valid base64"),
        ("16 bytes only", base64.b64encode(os.urandom(16)).decode(), "must be 32 bytes"),
        ("a placeholder of zeros", base64.b64encode(bytes(32)).decode(), "not random"),
    ],
)
def test_a_malformed_master_key_is_refused_without_echoing_it(
    make_settings: Callable[..., Settings], key_dir: Path, why: str, value: str, message: str
) -> None:
    with pytest.raises(MasterKeyError, match=message) as caught:
        KeyStore.from_settings(make_settings(key_dir, value))
    assert value not in str(caught.value), why
    assert not key_dir.exists()


def test_both_an_inline_master_key_and_a_key_file_is_ambiguous(
    make_settings: Callable[..., Settings], key_dir: Path, master_key: str, tmp_path: Path
) -> None:
    key_file = create_master_key_file(tmp_path / "secrets" / "master.key")
    with pytest.raises(MasterKeyError, match="keep only one"):
        KeyStore.from_settings(make_settings(key_dir, master_key, master_key_file=key_file))


def test_the_master_key_is_read_from_the_environment(
    monkeypatch: pytest.MonkeyPatch, key_dir: Path, master_key: str, tmp_path: Path
) -> None:
    monkeypatch.chdir(tmp_path)  # no developer .env in the way
    monkeypatch.setenv("PDP_MASTER_KEY", master_key)
    monkeypatch.setenv("PDP_KEY_STORE", str(key_dir))
    monkeypatch.delenv("PDP_MASTER_KEY_FILE", raising=False)
    get_settings.cache_clear()
    try:
        KeyStore.from_settings().init()
        reopened = KeyStore(key_dir, LocalMasterKey.from_base64(master_key, origin="test"))
        assert reopened.current("pseudonym").version == 1
    finally:
        get_settings.cache_clear()


@pytest.mark.parametrize("form", ["base64 text", "raw bytes"])
def test_the_master_key_is_read_from_a_private_file(
    make_settings: Callable[..., Settings], key_dir: Path, tmp_path: Path, form: str
) -> None:
    key_file = tmp_path / "master.key"
    material = os.urandom(32)
    key_file.write_bytes(base64.b64encode(material) + b"\n" if form == "base64 text" else material)
    key_file.chmod(0o600)
    settings = make_settings(key_dir, None, master_key_file=key_file)
    keys_init(settings)
    assert [i.version for i in keys_status(settings)] == [1] * 8
    key_file.chmod(0o644)
    with pytest.raises(MasterKeyError, match="accessible to other users"):
        KeyStore.from_settings(settings)


def test_a_new_master_key_file_is_private_and_never_overwritten(tmp_path: Path) -> None:
    path = create_master_key_file(tmp_path / "secrets" / "master.key")
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    first = path.read_bytes()
    with pytest.raises(MasterKeyError, match="refusing to overwrite"):
        create_master_key_file(path)
    assert path.read_bytes() == first
    LocalMasterKey.from_file(path)  # readable as a master key


def test_a_store_shared_with_other_users_is_refused(store: KeyStore, settings: Settings, key_dir: Path) -> None:
    key_dir.chmod(0o755)
    with pytest.raises(KeyStoreError, match="chmod 700"):
        KeyStore.from_settings(settings)


# --- tampering ------------------------------------------------------------------------------


def test_an_altered_key_file_fails_authentication(store: KeyStore, settings: Settings, key_dir: Path) -> None:
    path = key_dir / "pseudonym-v1.json"
    record = json.loads(path.read_text())
    wrapped = bytearray(base64.b64decode(record["wrapped"]))
    wrapped[-1] ^= 0x01
    record["wrapped"] = base64.b64encode(bytes(wrapped)).decode()
    path.write_text(json.dumps(record))
    with pytest.raises(KeyStoreError, match="master key does not open the key store"):
        KeyStore.from_settings(settings)


def test_a_key_moved_to_another_version_fails_authentication(
    store: KeyStore, settings: Settings, key_dir: Path
) -> None:
    """The associated data binds purpose and version: v1's wrapped key cannot pose as v2."""
    store.rotate("pseudonym")
    v1 = json.loads((key_dir / "pseudonym-v1.json").read_text())
    v2 = json.loads((key_dir / "pseudonym-v2.json").read_text())
    v2["wrapped"] = v1["wrapped"]
    (key_dir / "pseudonym-v2.json").write_text(json.dumps(v2))
    with pytest.raises(KeyStoreError, match="master key does not open the key store"):
        KeyStore.from_settings(settings)


def test_a_missing_version_makes_the_store_inconsistent(store: KeyStore, settings: Settings, key_dir: Path) -> None:
    store.rotate("vault")
    store.rotate("vault")
    (key_dir / "vault-v2.json").unlink()
    with pytest.raises(KeyStoreError, match="not contiguous"):
        KeyStore.from_settings(settings).current("vault")


def test_a_file_with_unknown_fields_is_refused(store: KeyStore, settings: Settings, key_dir: Path) -> None:
    path = key_dir / "vault-v1.json"
    record = json.loads(path.read_text()) | {"material": "oops"}
    path.write_text(json.dumps(record))
    with pytest.raises(KeyStoreError, match=r"vault-v1\.json is malformed"):
        KeyStore.from_settings(settings)


# --- rotation and retirement ---------------------------------------------------------------


def test_rotation_makes_a_new_current_version_and_keeps_the_old_one_readable(store: KeyStore) -> None:
    old = store.current("pseudonym")
    new = store.rotate("pseudonym")
    assert (new.version, new.status) == (2, "current")
    assert new.material != old.material
    assert store.current("pseudonym") == new
    previous = store.get("pseudonym", 1)
    assert (previous.status, previous.material) == ("previous", old.material)
    assert store.current("vault").version == 1  # purposes rotate independently


def test_retirement_stops_use_but_keeps_the_key_readable(store: KeyStore, settings: Settings) -> None:
    old = store.current("vault")
    store.rotate("vault")
    store.retire("vault", 1)
    store.retire("vault", 1)  # twice is a no-op
    reopened = KeyStore.from_settings(settings)
    retired = reopened.get("vault", 1)
    assert (retired.status, retired.material) == ("retired", old.material)
    info = {(i.purpose, i.version): i for i in reopened.status()}
    assert info["vault", 1].status == "retired" and info["vault", 1].retired_at is not None
    assert info["vault", 2].status == "current" and info["vault", 2].retired_at is None


def test_the_current_version_cannot_be_retired(store: KeyStore) -> None:
    with pytest.raises(KeyStoreError, match="rotate before retiring"):
        store.retire("pseudonym", 1)
    with pytest.raises(KeyStoreError, match="no pseudonym key version 7"):
        store.retire("pseudonym", 7)


def test_an_unknown_purpose_is_refused(store: KeyStore, settings: Settings) -> None:
    with pytest.raises(KeyStoreError, match="unknown key purpose"):
        store.current("passwords")  # type: ignore[arg-type]
    with pytest.raises(KeyStoreError, match="unknown key purpose"):
        keys_rotate(settings, "passwords")


def test_the_command_helpers_init_show_and_rotate(make_settings: Callable[..., Settings], key_dir: Path) -> None:
    settings = make_settings(key_dir, base64.b64encode(os.urandom(32)).decode())
    summary = keys_init(settings)
    assert "pseudonym v1" in summary and "vault v1" in summary and "\n" not in summary
    rotated = keys_rotate(settings, "pseudonym")
    assert (rotated.purpose, rotated.version, rotated.status) == ("pseudonym", 2, "current")
    assert [(i.purpose, i.version, i.status) for i in keys_status(settings)] == [
        ("pseudonym", 1, "previous"),
        ("pseudonym", 2, "current"),
        ("vault", 1, "current"),
        ("record", 1, "current"),
        ("nametoken", 1, "current"),
        ("opposition", 1, "current"),
        ("seal", 1, "current"),
        ("serving", 1, "current"),
        ("psi", 1, "current"),
    ]


# --- no material where it does not belong -------------------------------------------------


def test_key_files_hold_no_raw_key_bytes(store: KeyStore, key_dir: Path) -> None:
    store.rotate("pseudonym")
    materials = [store.get("pseudonym", 1).material, store.get("pseudonym", 2).material]
    materials.append(store.current("vault").material)
    blob = b"".join(path.read_bytes() for path in key_dir.iterdir())
    for material in materials:
        for form in encodings(material):
            assert form not in blob


def test_repr_str_and_status_never_show_material(store: KeyStore) -> None:
    key = store.current("pseudonym")
    assert isinstance(key, DataKey)
    shown = " ".join([repr(key), str(key), f"{key}", repr(store), repr(store.status())]).encode()
    for form in encodings(key.material):
        assert form not in shown
    assert "hidden" in repr(key)
    assert all(isinstance(info, KeyInfo) and not hasattr(info, "material") for info in store.status())


def test_the_key_store_speaks_to_any_key_encryption_service(key_dir: Path) -> None:
    """A KMS client only has to wrap/unwrap; the store records which service wrapped each key."""

    class OtherService:
        kek_id = "test-kms:pdp-master"

        def __init__(self) -> None:
            self._inner = LocalMasterKey(os.urandom(32), origin="test")
            self.calls = 0

        def wrap(self, material: bytes, *, aad: bytes) -> bytes:
            self.calls += 1
            return self._inner.wrap(material, aad=aad)

        def unwrap(self, wrapped: bytes, *, aad: bytes) -> bytes:
            self.calls += 1
            return self._inner.unwrap(wrapped, aad=aad)

    service = OtherService()
    assert isinstance(service, KeyEncryptionService)
    store = KeyStore(key_dir, service)
    store.init()
    assert store.current("vault").version == 1 and service.calls >= 3
    assert json.loads((key_dir / "vault-v1.json").read_text())["kek"] == "test-kms:pdp-master"
    with pytest.raises(KeyStoreError, match="wrapped by 'test-kms:pdp-master'"):
        KeyStore(key_dir, LocalMasterKey(os.urandom(32), origin="test"))


def test_a_purpose_added_after_init_is_created_on_first_use(store: KeyStore, key_dir: Path) -> None:
    (key_dir / "record-v1.json").unlink()  # a store initialised before the "record" purpose existed
    key = store.ensure("record")
    assert (key.purpose, key.version) == ("record", 1)
    assert store.ensure("record").material == key.material, "created once, then reused"

"""Per-purpose keys (HKDF) and the generated development key (issue 13 item 1)."""

from __future__ import annotations

import stat
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from pydantic import ValidationError

from duly.keys import Purpose, derive_key, hkdf_sha256, load_or_create_key_file
from duly.settings import DEV_SECRET_KEY, Settings

MASTER = "a-master-key-that-is-long-enough-0123456789"


def test_hkdf_matches_the_reference_implementation() -> None:
    for info in (b"", b"duly/v1/ack-link", b"x" * 300):
        for length in (1, 32, 64, 100):
            reference = HKDF(algorithm=hashes.SHA256(), length=length, salt=None, info=info)
            assert hkdf_sha256(MASTER.encode(), info, length) == reference.derive(MASTER.encode())


def test_rfc5869_test_case_1() -> None:
    ikm = bytes.fromhex("0b" * 22)
    salt = bytes.fromhex("000102030405060708090a0b0c")
    info = bytes.fromhex("f0f1f2f3f4f5f6f7f8f9")
    okm = hkdf_sha256(ikm, info, 42, salt)
    assert okm.hex() == (
        "3cb25f25faacd57a90434f64d0362f2a2d2d0a90cf1a5a4c5db02d56ecc4c5bf34007208d5b887185865"
    )


def test_each_purpose_has_its_own_key_and_none_is_the_master() -> None:
    keys = {purpose: derive_key(MASTER, purpose) for purpose in Purpose}
    assert len(set(keys.values())) == len(Purpose)
    assert all(len(key) == 32 and MASTER.encode() not in key for key in keys.values())
    assert derive_key("another" + MASTER, Purpose.ACK_LINK) != keys[Purpose.ACK_LINK]
    ring = Settings(env="test", secret_key=MASTER).key_ring()
    assert ring.ack_link == keys[Purpose.ACK_LINK]
    assert ring.sign_in_link == keys[Purpose.SIGN_IN_LINK]


def test_dev_key_is_generated_private_and_reused(tmp_path: Path) -> None:
    data = tmp_path / "data"
    first = Settings(env="dev", data_dir=data).key_ring()
    key_file = data / "secret_key"
    assert stat.S_IMODE(key_file.stat().st_mode) == 0o600
    assert first.master != DEV_SECRET_KEY and len(first.master) >= 32
    # The next start (another process, another Settings) reuses it: sent links keep working.
    assert Settings(env="dev", data_dir=data).key_ring().ack_link == first.ack_link
    # The old constant counts as unset outside production.
    legacy = Settings(env="dev", data_dir=data, secret_key=DEV_SECRET_KEY).key_ring()
    assert legacy.master == first.master
    # Another data directory, another key: no constant shared by every installation.
    assert Settings(env="dev", data_dir=tmp_path / "other").key_ring().master != first.master


def test_a_readable_key_file_is_tightened_and_a_short_one_refused(tmp_path: Path) -> None:
    key_file = tmp_path / "secret_key"
    key_file.write_text("k" * 40)
    key_file.chmod(0o644)
    assert load_or_create_key_file(tmp_path) == "k" * 40
    assert stat.S_IMODE(key_file.stat().st_mode) == 0o600
    key_file.write_text("short")
    with pytest.raises(ValueError, match="delete the file"):
        load_or_create_key_file(tmp_path)


def test_an_explicit_key_wins_and_production_still_needs_one(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    ring = Settings(env="dev", data_dir=tmp_path, secret_key=MASTER).key_ring()
    assert ring.master == MASTER and not (tmp_path / "secret_key").exists()
    monkeypatch.delenv("DULY_SECRET_KEY", raising=False)
    with pytest.raises(ValidationError, match="DULY_SECRET_KEY"):
        Settings(env="production", database_url="postgresql+psycopg://u@db/duly")

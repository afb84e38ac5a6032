"""One key per purpose, derived from ``DULY_SECRET_KEY`` with HKDF-SHA256 (RFC 5869).

Each purpose (acknowledgement links, sign-in links, ...) gets its own 256-bit key::

    key = HKDF-SHA256(ikm=DULY_SECRET_KEY, salt="", info="duly/v1/<purpose>", length=32)

so a key that leaks for one purpose (say, through a debugging session that printed it) opens
nothing else, and a token minted for one purpose never verifies for another. The master key
itself signs nothing.

This module imports nothing of Duly's (floor 1): the notifications and store floors use it.
It also keeps the development key: outside production a random master key is generated once
into the data directory (file mode 0600) and reused on every start.
"""

from __future__ import annotations

import contextlib
import hashlib
import hmac
import os
import secrets
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path

#: Bytes of every derived key.
KEY_BYTES = 32
#: Name of the generated development key file in the data directory.
DEV_KEY_FILE = "secret_key"
#: Shortest master key accepted from a file or the environment in production.
MIN_SECRET_LENGTH = 32


class Purpose(StrEnum):
    """What a derived key is for; the value is part of the HKDF ``info``."""

    ACK_LINK = "ack-link"
    SIGN_IN_LINK = "sign-in-link"
    WEB_SESSION = "web-session"


def hkdf_sha256(ikm: bytes, info: bytes, length: int = KEY_BYTES, salt: bytes = b"") -> bytes:
    """HKDF-SHA256 extract-then-expand (RFC 5869).

    Args:
        ikm: Input keying material (the master key).
        info: Context binding the output to one purpose.
        length: Output bytes (at most 255 * 32).
        salt: Optional salt; empty means 32 zero bytes, as the RFC says.

    Returns:
        ``length`` bytes of output keying material.

    Raises:
        ValueError: ``length`` out of range.
    """
    if not 0 < length <= 255 * hashlib.sha256().digest_size:
        raise ValueError("HKDF length must be between 1 and 8160 bytes")
    prk = hmac.new(salt or bytes(hashlib.sha256().digest_size), ikm, hashlib.sha256).digest()
    output, block = b"", b""
    counter = 1
    while len(output) < length:
        block = hmac.new(prk, block + info + bytes([counter]), hashlib.sha256).digest()
        output += block
        counter += 1
    return output[:length]


def derive_key(master: str, purpose: Purpose) -> bytes:
    """The 256-bit key for ``purpose`` derived from the master key.

    Raises:
        ValueError: An empty master key.
    """
    if not master:
        raise ValueError("the master key must not be empty")
    return hkdf_sha256(master.encode(), f"duly/v1/{purpose.value}".encode())


@dataclass(frozen=True)
class KeyRing:
    """The derived keys of one master key (derived once each, on first use)."""

    master: str = field(repr=False)
    _cache: dict[Purpose, bytes] = field(default_factory=dict, repr=False, compare=False)

    def key(self, purpose: Purpose) -> bytes:
        """The key for ``purpose``."""
        if purpose not in self._cache:
            self._cache[purpose] = derive_key(self.master, purpose)
        return self._cache[purpose]

    @property
    def ack_link(self) -> bytes:
        """Signs acknowledgement links (``/ack/<token>``)."""
        return self.key(Purpose.ACK_LINK)

    @property
    def sign_in_link(self) -> bytes:
        """Signs one-time sign-in links (``/ui/sign-in/link/<token>``)."""
        return self.key(Purpose.SIGN_IN_LINK)

    @property
    def web_session(self) -> bytes:
        """Signs browser session cookies and derives their CSRF tokens."""
        return self.key(Purpose.WEB_SESSION)


class KeyFileError(ValueError):
    """The development key file cannot be used; the message says how to fix it."""


def load_or_create_key_file(data_dir: Path) -> str:
    """The master key kept in ``data_dir/secret_key``, generated (mode 0600) when missing.

    Creation is atomic (written to a private temporary file, then hard-linked into place), so
    an API and a worker starting together agree on one key. A file readable by group or others
    is tightened to 0600.

    Raises:
        KeyFileError: The file exists but holds a key shorter than 32 characters.
    """
    data_dir.mkdir(parents=True, exist_ok=True)
    path = data_dir / DEV_KEY_FILE
    if not path.exists():
        fresh = secrets.token_urlsafe(48)
        temporary = data_dir / f".{DEV_KEY_FILE}.{os.getpid()}.{secrets.token_hex(4)}"
        descriptor = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        try:
            with os.fdopen(descriptor, "w") as handle:
                handle.write(fresh + "\n")
            # Another process may win the race: then its key is the one kept.
            with contextlib.suppress(FileExistsError):
                os.link(temporary, path)
        finally:
            temporary.unlink(missing_ok=True)
    if path.stat().st_mode & 0o077:
        path.chmod(0o600)
    key = path.read_text().strip()
    if len(key) < MIN_SECRET_LENGTH:
        raise KeyFileError(
            f"{path} holds a key shorter than {MIN_SECRET_LENGTH} characters; delete the file "
            "to generate a new one (links already sent stop working) or set DULY_SECRET_KEY"
        )
    return key

"""Encryption of account and proxy secrets (cookies, passwords, TOTP secrets, proxy URLs).

Fernet (AES-128-CBC + HMAC-SHA256, from `cryptography`) with the key in XGET_ACCOUNT_KEY:
either a Fernet key (`SecretBox.new_key()`) or any passphrase, from which a key is derived
with scrypt. Secrets are encrypted before they reach Kafka or disk and decrypted only in the
process that uses them; `SecretBox` never logs or reprs what it holds.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
from pathlib import Path
from typing import Any

import orjson
from cryptography.fernet import Fernet, InvalidToken

from libs.settings import Settings

_SALT = b"xget-account-key/v1"


class SecretKeyError(RuntimeError):
    """No key, or a token this key cannot open."""


def _fernet_key(key: str) -> bytes:
    raw = key.strip().encode()
    try:
        if len(base64.urlsafe_b64decode(raw)) == 32:
            return raw
    except (binascii.Error, ValueError):
        pass
    derived = hashlib.scrypt(raw, salt=_SALT, n=2**14, r=8, p=1, dklen=32)
    return base64.urlsafe_b64encode(derived)


class SecretBox:
    def __init__(self, key: str):
        if not key or not key.strip():
            raise SecretKeyError(
                "XGET_ACCOUNT_KEY is not set: it encrypts account secrets "
                "(generate one with: python -c 'from libs.secretbox import SecretBox; "
                "print(SecretBox.new_key())')"
            )
        self._f = Fernet(_fernet_key(key))

    @classmethod
    def from_settings(cls, settings: Settings) -> SecretBox:
        """XGET_ACCOUNT_KEY, else the local stack's generated key (DATA/account.key)."""
        key = settings.account_key.get_secret_value()
        if not key:
            local_key = Path(settings.data_dir) / "account.key"
            if local_key.is_file():
                key = local_key.read_text().strip()
        return cls(key)

    @staticmethod
    def new_key() -> str:
        return Fernet.generate_key().decode()

    def seal(self, obj: Any) -> str:
        return self._f.encrypt(orjson.dumps(obj)).decode()

    def open(self, token: str) -> Any:
        try:
            return orjson.loads(self._f.decrypt(token.encode()))
        except InvalidToken as e:
            raise SecretKeyError("secret cannot be decrypted with this XGET_ACCOUNT_KEY") from e

    def __repr__(self) -> str:
        return "SecretBox(<key hidden>)"

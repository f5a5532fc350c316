"""Client authentication: per-client tokens or one shared secret. No I/O.

A token file has one entry per line, ``ID SECRET``, where SECRET is either the
token itself or, better, its salted hash from ``vclock hash-token``
(``scrypt$<salt hex>$<hash hex>``). ``*`` as the ID is a shared secret that any id
may present. Blank lines and lines starting with ``#`` are ignored.

Every comparison is constant-time (:func:`hmac.compare_digest`), and every check
does the same work whatever the id: an unknown id is compared with a dummy of the
file's kind, and in a file with any hashed entry every comparison hashes the token
once, a plain entry's too (else a plain id answered in 0.2 ms and every other in
30 ms, telling which ids are listed). So timing tells an attacker nothing about
which part of a hello was wrong, nor which ids exist.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets

SHARED = "*"
_DUMMY_SALT = bytes(16)
_DUMMY = "scrypt$" + _DUMMY_SALT.hex() + "$" + "00" * 32
_HASH = re.compile(r"scrypt\$(?:[0-9a-fA-F]{2})+\$(?:[0-9a-fA-F]{2})+")


def hash_token(token: str, *, salt: bytes | None = None) -> str:
    """The salted scrypt hash of ``token``, in the form a token file accepts."""
    salt = secrets.token_bytes(16) if salt is None else salt
    digest = hashlib.scrypt(token.encode(), salt=salt, n=2**14, r=8, p=1, dklen=32)
    return f"scrypt${salt.hex()}${digest.hex()}"


class Authenticator:
    """Decides whether a hello's ``(id, token)`` may connect.

    Args:
        secrets_by_id: id → token or ``scrypt$...`` hash; the id ``*`` is a shared secret.
    """

    def __init__(self, secrets_by_id: dict[str, str]) -> None:
        if not secrets_by_id:
            raise ValueError("an authenticator needs at least one id or a shared secret")
        for client_id, secret in secrets_by_id.items():
            # Checked here, not at the first hello (where a ValueError would escape the hub).
            if secret.startswith("scrypt$") and not _HASH.fullmatch(secret):
                raise ValueError(
                    f"malformed hash for {client_id!r}: expected scrypt$SALT$HASH in hex"
                )
        self._secrets = dict(secrets_by_id)
        self._hashed = any(secret.startswith("scrypt$") for secret in self._secrets.values())
        # An unknown id is compared against a dummy of the same kind as the real ones.
        self._dummy = _DUMMY if self._hashed else secrets.token_hex(16)

    @classmethod
    def from_text(cls, text: str) -> Authenticator:
        """Parse a token file (see the module docstring).

        Raises:
            ValueError: a malformed line, naming its number.
        """
        entries: dict[str, str] = {}
        for number, raw in enumerate(text.splitlines(), 1):
            line = raw.strip()
            if not line or line.startswith("#"):
                continue
            parts = line.split()
            if len(parts) != 2:
                raise ValueError(f"line {number}: expected 'ID SECRET', got {len(parts)} fields")
            entries[parts[0]] = parts[1]
        return cls(entries)

    def check(self, client_id: str | None, token: str | None) -> bool:
        """True when ``token`` authenticates ``client_id``."""
        token = token or ""
        # One comparison for the id's own slot, listed or not, named or not.
        own = self._secrets.get(client_id) if client_id is not None else None
        listed = own is not None
        own = own if own is not None else self._dummy
        ok = self._matches(own, token, even=self._hashed) and listed
        shared = self._secrets.get(SHARED)
        if shared is not None:
            # The shared secret admits any id that has no token of its own (and a
            # hello must still name one); it never lets anyone take a listed id.
            # It is checked for every id, so listed and unlisted ids cost the same.
            shared_ok = self._matches(shared, token, even=False)
            if not listed:
                ok = shared_ok and client_id is not None
        return ok

    @staticmethod
    def _matches(secret: str, token: str, *, even: bool) -> bool:
        """``token`` against ``secret``; with ``even``, a plain secret costs a hash too
        (what a hashed one costs), so that its id is not told apart by its speed."""
        if secret.startswith("scrypt$"):
            _, salt, _ = secret.split("$")
            candidate = hash_token(token, salt=bytes.fromhex(salt))
            return hmac.compare_digest(candidate.encode(), secret.encode())
        if even:
            hash_token(token, salt=_DUMMY_SALT)
        return hmac.compare_digest(token.encode(), secret.encode())

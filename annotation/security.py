"""Password hashing with ``hashlib.scrypt`` (memory-hard, standard library).

Stored format: ``scrypt$<n>$<r>$<p>$<salt b64>$<hash b64>``; the parameters travel with the hash,
so the cost can be raised later without invalidating old passwords.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import os

DEFAULT_N = 2**14
"""scrypt CPU/memory cost (16 MiB with r=8); tests may pass a smaller power of two."""

MAX_PASSWORD_CHARS = 1024


def _b64(b: bytes) -> str:
    return base64.b64encode(b).decode("ascii")


def hash_password(password: str, *, n: int = DEFAULT_N, r: int = 8, p: int = 1) -> str:
    """Hash ``password`` with a fresh 16-byte salt; ``ValueError`` for an unusable password."""
    if not isinstance(password, str) or len(password) < 8:
        raise ValueError("password must be a string of at least 8 characters")
    if len(password) > MAX_PASSWORD_CHARS:
        raise ValueError(f"password must be at most {MAX_PASSWORD_CHARS} characters")
    if n < 2 or n & (n - 1):
        raise ValueError(f"scrypt n must be a power of two >= 2, got {n}")
    salt = os.urandom(16)
    digest = hashlib.scrypt(password.encode("utf-8"), salt=salt, n=n, r=r, p=p, maxmem=2**26, dklen=32)
    return f"scrypt${n}${r}${p}${_b64(salt)}${_b64(digest)}"


def verify_password(password: str, stored: str) -> bool:
    """True when ``password`` matches ``stored`` (constant-time compare); False on any mismatch."""
    try:
        scheme, n, r, p, salt_b64, digest_b64 = stored.split("$")
        if scheme != "scrypt" or not isinstance(password, str):
            return False
        if len(password) > MAX_PASSWORD_CHARS:
            return False
        salt = base64.b64decode(salt_b64)
        expected = base64.b64decode(digest_b64)
        got = hashlib.scrypt(
            password.encode("utf-8"),
            salt=salt,
            n=int(n),
            r=int(r),
            p=int(p),
            maxmem=2**26,
            dklen=len(expected),
        )
    except (ValueError, TypeError):
        return False
    return hmac.compare_digest(got, expected)

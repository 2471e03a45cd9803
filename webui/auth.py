"""Login tokens: signing and verifying them, and the signing key kept in the data folder."""

from __future__ import annotations

import contextlib
import hashlib
import hmac
import logging
import os
import tempfile
import time
from pathlib import Path
from typing import Any

log = logging.getLogger("reasongen.app")

SECRET_FILE = ".secret"


def persistent_secret(data_dir: str | Path) -> str | None:
    """The login-signing key stored in ``<data_dir>/.secret``, made (random, mode 0600) if absent.

    Written to a temporary file and hard-linked into place, so two servers starting at once agree
    on one complete key. Returns None (the caller then uses a per-process key) when the folder
    cannot be written or the file is unreadable or empty; that is logged, not raised.
    """
    path = Path(data_dir) / SECRET_FILE
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        if not path.exists():
            fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f"{SECRET_FILE}.")  # mode 0600
            try:
                with os.fdopen(fd, "w") as f:
                    f.write(os.urandom(32).hex())
                with contextlib.suppress(FileExistsError):  # another server was first: use its key
                    os.link(tmp, path)
            finally:
                os.unlink(tmp)
        key = path.read_text().strip()
    except OSError as err:
        log.warning("cannot keep a login key in %s (%s); logins will not survive a restart", path, err)
        return None
    if not key:
        log.warning("%s is empty; logins will not survive a restart (delete it to make a new key)", path)
        return None
    return key


class TokenSigner:
    """Signed login tokens (``user_id.issued.signature``) kept in the browser across reloads."""

    def __init__(self, secret: str | None, max_age_s: float = 12 * 3600) -> None:
        self.key = (secret or os.urandom(32).hex()).encode()
        self.max_age_s = max_age_s

    def _sig(self, payload: str) -> str:
        return hmac.new(self.key, payload.encode(), hashlib.sha256).hexdigest()

    def sign(self, user_id: int) -> str:
        payload = f"{int(user_id)}.{int(time.time())}"
        return f"{payload}.{self._sig(payload)}"

    def verify(self, token: Any) -> int | None:
        """The user id of a valid, unexpired token, else None."""
        if not isinstance(token, str) or token.count(".") != 2:
            return None
        uid, issued, sig = token.split(".")
        if not hmac.compare_digest(sig, self._sig(f"{uid}.{issued}")):
            return None
        try:
            if time.time() - int(issued) > self.max_age_s:
                return None
            return int(uid)
        except ValueError:
            return None

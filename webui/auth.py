"""Login tokens: signing, verifying and revoking them, and the signing key kept in the data folder."""

from __future__ import annotations

import contextlib
import hashlib
import hmac
import logging
import os
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

log = logging.getLogger("reasongen.app")

SECRET_FILE = ".secret"
REVOKED_FILE = ".revoked-logins"
"""Ids of logged-out tokens (see ``RevokedTokens``), next to ``SECRET_FILE``."""


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


class RevokedTokens:
    """Ids of login tokens revoked before they expire (logout), with each one's expiry time.

    Kept in memory and, when ``path`` is given, appended to that file (one ``<id> <expires_at>``
    line per logout, owner-only), which is read back whenever it changes: a revoked token stays
    revoked after a restart and for every server sharing the data folder (servers sharing a
    database must share the data folder anyway, for the images). Lines of expired tokens are
    skipped when read; the file grows by one short line per logout and those lines may be deleted.
    If the file cannot be written the revocation still holds in this process (logged).
    """

    def __init__(self, path: str | Path | None = None, clock: Callable[[], float] = time.time) -> None:
        self.path = None if path is None else Path(path)
        self.clock = clock
        self._ids: dict[str, float] = {}  # token id -> expires at (epoch seconds)
        self._seen: tuple[int, int] | None = None  # (mtime_ns, size) of the file last read
        self._lock = threading.Lock()

    def _reload(self) -> None:
        if self.path is None:
            return
        try:
            st = self.path.stat()
        except OSError:
            return
        if (st.st_mtime_ns, st.st_size) == self._seen:
            return
        try:
            text = self.path.read_text()
        except OSError as err:
            log.warning("cannot read revoked logins from %s: %s", self.path, err)
            return
        now = self.clock()
        for line in text.splitlines():
            parts = line.split()
            try:
                tid, expires = parts[0], float(parts[1])
            except (IndexError, ValueError):
                continue  # a torn or foreign line: ignored
            if expires > now:
                self._ids[tid] = expires
        self._seen = (st.st_mtime_ns, st.st_size)

    def add(self, token_id: str, expires_at: float) -> None:
        """Revoke ``token_id`` until ``expires_at`` (after which the token is refused anyway)."""
        with self._lock:
            self._ids[token_id] = expires_at
            if self.path is None:
                return
            try:
                self.path.parent.mkdir(parents=True, exist_ok=True)
                fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
                try:
                    os.write(fd, f"{token_id} {expires_at:.0f}\n".encode())
                finally:
                    os.close(fd)
            except OSError as err:
                log.warning("cannot record a logout in %s (%s); it holds until a restart", self.path, err)

    def __contains__(self, token_id: object) -> bool:
        with self._lock:
            self._reload()
            expires = self._ids.get(token_id) if isinstance(token_id, str) else None
            if expires is not None and expires <= self.clock():
                del self._ids[token_id]  # type: ignore[arg-type]
                return False
            return expires is not None


class TokenSigner:
    """Signed login tokens (``user_id.issued.token_id.signature``) kept in the browser across
    reloads. A token is valid for ``max_age_s`` seconds after it was issued, unless revoked
    (``revoke``, on logout) before then."""

    def __init__(self, secret: str | None, max_age_s: float = 12 * 3600,
                 revoked: RevokedTokens | None = None) -> None:  # fmt: skip
        self.key = (secret or os.urandom(32).hex()).encode()
        self.max_age_s = max_age_s
        self.revoked = revoked if revoked is not None else RevokedTokens()

    def _sig(self, payload: str) -> str:
        return hmac.new(self.key, payload.encode(), hashlib.sha256).hexdigest()

    def sign(self, user_id: int) -> str:
        payload = f"{int(user_id)}.{int(time.time())}.{os.urandom(8).hex()}"
        return f"{payload}.{self._sig(payload)}"

    def _check(self, token: Any) -> tuple[int, int, str] | None:
        """(user id, issued, token id) of a well-signed, unexpired token, else None."""
        if not isinstance(token, str) or token.count(".") != 3:
            return None
        uid, issued, tid, sig = token.split(".")
        if not hmac.compare_digest(sig, self._sig(f"{uid}.{issued}.{tid}")):
            return None
        try:
            if time.time() - int(issued) > self.max_age_s:
                return None
            return int(uid), int(issued), tid
        except ValueError:
            return None

    def verify(self, token: Any) -> int | None:
        """The user id of a valid, unexpired, unrevoked token, else None."""
        checked = self._check(token)
        if checked is None or checked[2] in self.revoked:
            return None
        return checked[0]

    def revoke(self, token: Any) -> bool:
        """Revoke a valid token (logout); False if it was not valid anyway."""
        checked = self._check(token)
        if checked is None:
            return False
        self.revoked.add(checked[2], checked[1] + self.max_age_s)
        return True

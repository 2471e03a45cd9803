"""webui.auth: signed, expiring, revocable login tokens and the signing key kept in the data folder."""

from __future__ import annotations

import os
import stat
import time

from webui.auth import REVOKED_FILE, SECRET_FILE, RevokedTokens, TokenSigner, persistent_secret


def test_login_tokens():
    signer = TokenSigner("secret-1")
    token = signer.sign(42)
    assert signer.verify(token) == 42
    _uid, issued, tid, sig = token.split(".")
    assert signer.verify(f"43.{issued}.{tid}.{sig}") is None  # forged user id
    assert signer.sign(42) != token  # each login gets its own token id
    assert TokenSigner("secret-2").verify(token) is None
    assert TokenSigner("secret-1", max_age_s=-1).verify(token) is None  # expired
    for junk in (None, "", "a.b", "x.y.z", "w.x.y.z", 5):
        assert signer.verify(junk) is None


def test_tampered_tokens_are_rejected():
    signer = TokenSigner("secret-1")
    token = signer.sign(7)
    uid, issued, tid, sig = token.split(".")
    later = str(int(issued) + 3600)
    assert signer.verify(f"{uid}.{later}.{tid}.{sig}") is None  # issued time moved forward
    assert signer.verify(f"{uid}.{issued}.{tid[::-1]}.{sig}") is None  # another token id
    flipped = sig[:-1] + ("0" if sig[-1] != "0" else "1")
    assert signer.verify(f"{uid}.{issued}.{tid}.{flipped}") is None  # one signature digit changed
    assert signer.verify(f"{uid}.{issued}.{tid}.{sig}.") is None  # extra field
    assert signer.verify(token.upper()) is None


def test_tokens_expire_after_max_age():
    signer = TokenSigner("k", max_age_s=60)
    assert signer.verify(signer.sign(3)) == 3
    old = f"3.{int(time.time()) - 120}.0123456789abcdef"
    assert signer.verify(f"{old}.{signer._sig(old)}") is None  # well signed, too old
    assert not signer.revoke(f"{old}.{signer._sig(old)}")  # nothing to revoke


def test_a_revoked_token_is_refused_and_stays_revoked_after_a_restart(tmp_path):
    path = tmp_path / REVOKED_FILE
    signer = TokenSigner("k", revoked=RevokedTokens(path))
    kept, ended = signer.sign(5), signer.sign(5)
    assert signer.revoke(ended) and not signer.revoke("5.1.x.forged")
    assert signer.verify(ended) is None and signer.verify(kept) == 5  # only that login ends
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    restarted = TokenSigner("k", revoked=RevokedTokens(path))
    assert restarted.verify(ended) is None and restarted.verify(kept) == 5
    # another server on the same data folder sees a logout made after it started
    other = TokenSigner("k", revoked=RevokedTokens(path))
    assert other.verify(kept) == 5
    restarted.revoke(kept)
    assert other.verify(kept) is None
    # a torn line is skipped; an expired revocation is dropped when read
    with path.open("a") as f:
        f.write("garbage\nold-id 1\n")
    assert "old-id" not in RevokedTokens(path) and RevokedTokens(path).__contains__(ended.split(".")[2])


def test_revocation_is_kept_in_memory_when_the_file_cannot_be_written(tmp_path):
    blocked = tmp_path / "file"
    blocked.write_text("not a folder")
    signer = TokenSigner("k", revoked=RevokedTokens(blocked / REVOKED_FILE))
    token = signer.sign(1)
    assert signer.revoke(token) and signer.verify(token) is None


def test_without_a_secret_each_signer_has_its_own_key():
    a, b = TokenSigner(None), TokenSigner(None)
    assert a.verify(a.sign(1)) == 1 and b.verify(a.sign(1)) is None


def test_secret_file_is_made_owner_only_and_reused(tmp_path):
    data = tmp_path / "data"
    key = persistent_secret(data)
    assert key and len(key) == 64 and persistent_secret(data) == key
    assert stat.S_IMODE(os.stat(data / SECRET_FILE).st_mode) == 0o600
    assert sorted(p.name for p in data.iterdir()) == [SECRET_FILE]  # no temporary file left behind
    assert persistent_secret(tmp_path / "other") != key  # a new folder gets a new random key


def test_an_existing_secret_file_is_used_as_it_is(tmp_path):
    (tmp_path / SECRET_FILE).write_text("my-own-key\n")
    assert persistent_secret(tmp_path) == "my-own-key"


def test_unusable_secret_file_gives_none(tmp_path):
    (tmp_path / SECRET_FILE).write_text("")
    assert persistent_secret(tmp_path) is None  # empty file: per-process key, logged
    blocked = tmp_path / "file"
    blocked.write_text("not a folder")
    assert persistent_secret(blocked) is None

"""webui.auth: signed login tokens and the signing key kept in the data folder."""

from __future__ import annotations

import os
import stat
import time

from webui.auth import SECRET_FILE, TokenSigner, persistent_secret


def test_login_tokens():
    signer = TokenSigner("secret-1")
    token = signer.sign(42)
    assert signer.verify(token) == 42
    _uid, issued, sig = token.split(".")
    assert signer.verify(f"43.{issued}.{sig}") is None  # forged user id
    assert TokenSigner("secret-2").verify(token) is None
    assert TokenSigner("secret-1", max_age_s=-1).verify(token) is None  # expired
    for junk in (None, "", "a.b", "x.y.z", 5):
        assert signer.verify(junk) is None


def test_tampered_tokens_are_rejected():
    signer = TokenSigner("secret-1")
    token = signer.sign(7)
    uid, issued, sig = token.split(".")
    later = str(int(issued) + 3600)
    assert signer.verify(f"{uid}.{later}.{sig}") is None  # issued time moved forward
    flipped = sig[:-1] + ("0" if sig[-1] != "0" else "1")
    assert signer.verify(f"{uid}.{issued}.{flipped}") is None  # one signature digit changed
    assert signer.verify(f"{uid}.{issued}.{sig}.") is None  # extra field
    assert signer.verify(token.upper()) is None


def test_tokens_expire_after_max_age():
    signer = TokenSigner("k", max_age_s=60)
    assert signer.verify(signer.sign(3)) == 3
    old = f"3.{int(time.time()) - 120}"
    assert signer.verify(f"{old}.{signer._sig(old)}") is None  # well signed, too old


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

"""The researcher command line: study references, clean failures, admin subcommands, prompt
metadata for metadata-driven rewards, no password in what it prints (issue 19, item 12)."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import pytest

from annotation import cli
from annotation.cli import main as cli_main
from annotation.errors import NotFoundError
from annotation.store import Store


@pytest.fixture
def db(tmp_path: Path) -> tuple[list[str], Store]:
    base = ["--db", f"sqlite:///{tmp_path / 'cli.db'}", "--data-dir", str(tmp_path / "data")]
    store = Store(f"sqlite:///{tmp_path / 'cli.db'}", tmp_path / "data", password_cost=16)
    yield base, store
    store.close()


def test_init_never_prints_the_database_password(monkeypatch, capsys) -> None:
    url = "postgresql+psycopg://rita:s3cret-pw@db.example:5432/reasongen"

    class FakeStore:
        def __init__(self, *_a) -> None:
            self.url = url

        def __enter__(self):
            return self

        def __exit__(self, *_exc) -> None:
            pass

    monkeypatch.setattr(cli, "_store", lambda args: FakeStore())
    assert cli_main(["init"]) == 0
    out = capsys.readouterr().out
    assert "s3cret-pw" not in out and "rita:***@db.example:5432/reasongen" in out
    assert cli.masked_url("not a url at all") == "<unparsable database URL>"


def test_study_references_reach_a_study_named_like_a_number(db, capsys) -> None:
    base, store = db
    alpha = store.create_study("alpha", group_size=2, rankings_per_task=1)
    one = store.create_study("1", group_size=2, rankings_per_task=1)
    assert (alpha.id, one.id) == (1, 2)

    def study_of(ref: str) -> str:
        assert cli_main([*base, "progress", "--study", ref]) == 0
        return __import__("json").loads(capsys.readouterr().out)["study"]

    assert study_of("1") == "1"  # a name first...
    assert study_of("name:1") == "1"
    assert study_of("id:1") == "alpha"
    assert study_of("2") == "1"  # ...then, with no study named "2", the id
    assert study_of("alpha") == "alpha"
    assert cli_main([*base, "progress", "--study", "id:x"]) == 2
    assert cli_main([*base, "progress", "--study", "3"]) == 2


def test_failed_study_create_keeps_nothing_and_frees_the_name(db, tmp_path, monkeypatch, sample_factory):
    import annotation.populate as populate

    base, store = db
    (tmp_path / "p.txt").write_text("a red square\na blue circle\n")
    calls = {"n": 0}

    def source(model, prompt, recipe, n, seed, metadata):
        calls["n"] += 1
        if calls["n"] == 2:
            raise RuntimeError("out of GPU memory")
        return [sample_factory(prompt, model, recipe, seed, k) for k in range(n)]

    monkeypatch.setattr(populate, "reasongen_source", lambda device=None: source)
    create = [
        "study",
        "create",
        "--name",
        "pilot",
        "--prompts",
        str(tmp_path / "p.txt"),
        "--system",
        "m:direct",
    ]
    with pytest.raises(RuntimeError, match="GPU"):
        cli_main([*base, *create, "--group-size", "2"])
    with pytest.raises(NotFoundError):
        store.get_study("pilot")
    assert not list((tmp_path / "data" / "images").rglob("*.png"))  # the first prompt's images went too
    assert cli_main([*base, *create, "--group-size", "2"]) == 0  # the name is free again
    assert len(store.list_prompts(store.get_study("pilot").id)) == 2


def test_txt_prompts_get_shapes_metadata_and_a_warning_for_the_rest(
    db, tmp_path, monkeypatch, capsys, sample_factory
) -> None:
    import annotation.populate as populate

    base, store = db
    (tmp_path / "p.txt").write_text("two green stars\na red circle to the left of a blue square\na cat\n")
    seen_meta = []

    def source(model, prompt, recipe, n, seed, metadata):
        seen_meta.append(metadata)
        return [sample_factory(prompt, model, recipe, seed, k) for k in range(n)]

    def reward(samples):
        return SimpleNamespace(scores=[1.0] * len(samples), details=[{}] * len(samples))

    monkeypatch.setattr(populate, "reasongen_source", lambda device=None: source)
    monkeypatch.setattr(populate, "load_rewards", lambda names: dict.fromkeys(names, reward))
    args = ["study", "create", "--name", "s", "--prompts", str(tmp_path / "p.txt"), "--system", "m:direct"]
    assert cli_main([*base, *args, "--group-size", "2", "--reward", "shapes"]) == 0
    err = capsys.readouterr().err
    assert "1 of 3 prompts" in err and "shapes" in err
    rows = store.prompt_rows(store.get_study("s").id)
    assert [m is not None for _, _, m in rows] == [True, True, False]
    assert rows[0][2]["include"] == [{"class": "star", "count": 2, "color": "green"}]
    assert seen_meta[0] == rows[0][2]  # the reward's samples carry it


def test_admin_subcommands_for_users_and_studies(db, monkeypatch, capsys, populate_study) -> None:
    base, store = db
    monkeypatch.setenv("PW", "first-password")
    assert cli_main([*base, "user", "add", "ann", "--password-env", "PW"]) == 0
    assert cli_main([*base, "user", "deactivate", "ann"]) == 0
    assert store.authenticate("ann", "first-password") is None
    assert cli_main([*base, "user", "activate", "ann"]) == 0
    assert store.authenticate("ann", "first-password") is not None
    monkeypatch.setenv("PW", "second-password")
    assert cli_main([*base, "user", "passwd", "ann", "--password-env", "PW"]) == 0
    assert store.authenticate("ann", "first-password") is None
    assert store.authenticate("ann", "second-password") is not None
    assert cli_main([*base, "user", "passwd", "nobody", "--password-env", "PW"]) == 2
    assert cli_main([*base, "user", "activate"]) == 2  # no username
    sid, _ = populate_study(store, name="old")
    assert cli_main([*base, "study", "archive", "--study", "old"]) == 0
    assert store.get_study(sid).archived and store.list_studies() == []
    capsys.readouterr()
    assert cli_main([*base, "study", "list"]) == 0
    assert "archived" in capsys.readouterr().out
    assert cli_main([*base, "study", "unarchive", "--study", f"id:{sid}"]) == 0
    assert not store.get_study(sid).archived
    assert cli_main([*base, "study", "delete", "--study", "old"]) == 0
    with pytest.raises(NotFoundError):
        store.get_study(sid)
    assert cli_main([*base, "study", "delete"]) == 2  # no --study


def test_readme_example_models_exist() -> None:
    import re

    root = Path(__file__).resolve().parents[2]
    readme = (root / "annotation" / "README.md").read_text(encoding="utf-8")
    models = re.findall(r"--system (\S+):[\w-]+", readme)
    assert models and all((root / m / "config.json").is_file() for m in models), models


def test_simulated_users_are_created_labelled_and_cannot_log_in(db, capsys) -> None:
    base, store = db
    assert cli_main([*base, "user", "add", "panel-1", "--simulated"]) == 0
    assert "created simulated annotator panel-1" in capsys.readouterr().out
    info = store.get_user("panel-1")
    assert info.simulated and info.role == "annotator"
    assert cli_main([*base, "user", "list"]) == 0
    assert capsys.readouterr().out.strip().endswith("panel-1\tannotator\tactive\tsimulated")
    # No one knows its password, and even the right one would not log it in.
    with store.session() as s:
        from sqlalchemy import update

        from annotation.models import User
        from annotation.security import hash_password

        s.execute(
            update(User).where(User.username == "panel-1").values(password_hash=hash_password("x" * 12, n=16))
        )
    assert store.authenticate("panel-1", "x" * 12) is None
    person = store.create_user("ann", "password123")
    assert not person.simulated and store.authenticate("ann", "password123") == person

"""Schema, migrations and the store's services (users, studies, prompts, candidates, tasks)."""

from __future__ import annotations

import multiprocessing
from pathlib import Path
from types import SimpleNamespace

import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import func, inspect, select, text

from annotation.db import current_revision, default_url, init_db, make_engine
from annotation.errors import AnnotationError, ConflictError, NotFoundError, PermissionDeniedError
from annotation.lookups import load_study, load_user, system_label
from annotation.models import Base, Candidate, RewardScore, User
from annotation.security import hash_password, verify_password
from annotation.store import Store


class FakeReward:
    """A reward hook with the reward library's contract: scores and details per sample."""

    def __init__(self, scores):
        self.scores_to_give = scores

    def __call__(self, samples):
        return SimpleNamespace(
            scores=self.scores_to_give[: len(samples)],
            details=[{"why": f"sample {s.index}", "nan": float("nan")} for s in samples],
        )


def test_migrations_create_exactly_the_model_schema(store: Store) -> None:
    with store.engine.connect() as conn:
        diff = compare_metadata(MigrationContext.configure(conn), Base.metadata)
    assert diff == []
    assert current_revision(store.engine) == "0004"
    names = set(inspect(store.engine).get_table_names())
    assert set(Base.metadata.tables) <= names and "alembic_version" in names


def test_init_db_default_url_and_sqlite_pragmas(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)
    assert default_url() == f"sqlite:///{tmp_path / 'data' / 'reasongen.db'}"
    engine = init_db()
    assert (tmp_path / "data" / "reasongen.db").is_file()
    with engine.connect() as conn:
        assert conn.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
        assert conn.exec_driver_sql("PRAGMA foreign_keys").scalar() == 1
        assert conn.exec_driver_sql("PRAGMA busy_timeout").scalar() >= 10_000
    init_db(default_url())  # a second upgrade of an up-to-date database is a no-op
    assert current_revision(engine) == "0004"
    engine.dispose()


def test_bad_url_is_a_clear_value_error() -> None:
    with pytest.raises(ValueError, match="not a database URL"):
        make_engine("not a url at all")


def test_foreign_keys_are_enforced(store: Store) -> None:
    with pytest.raises(Exception, match=r"(?i)foreign key"), store.session() as s:
        s.execute(text("INSERT INTO ranking_entries (ranking_id, candidate_id, rank) VALUES (999, 999, 1)"))


def test_passwords_are_scrypt_hashed_and_verified(store: Store) -> None:
    u = store.create_user("alice", "correct horse", role="researcher")
    assert u.role == "researcher" and u.active
    with store.session() as s:
        stored = s.scalar(select(User.password_hash).where(User.id == u.id))
    assert stored.startswith("scrypt$") and "correct horse" not in stored
    assert store.authenticate("alice", "correct horse") == u
    assert store.authenticate("alice", "wrong horse!") is None
    assert store.authenticate("nobody", "correct horse") is None
    store.set_user_active("alice", False)
    assert store.authenticate("alice", "correct horse") is None
    # Two hashes of one password differ (fresh salt), both verify.
    a, b = hash_password("same password"), hash_password("same password")
    assert a != b and verify_password("same password", a) and verify_password("same password", b)
    assert not verify_password("same password", "garbage$hash")


def test_user_validation(store: Store) -> None:
    store.create_user("bob", "password1")
    with pytest.raises(ConflictError, match="already exists"):
        store.create_user("bob", "password2")
    with pytest.raises(AnnotationError, match="username"):
        store.create_user("bob'; DROP TABLE users;--", "password1")
    with pytest.raises(ValueError, match="at least 8"):
        store.create_user("carol", "short")
    with pytest.raises(AnnotationError, match="role"):
        store.create_user("carol", "password1", role="admin")
    with pytest.raises(NotFoundError):
        store.get_user("carol")
    assert [u.username for u in store.list_users()] == ["bob"]


def test_lookups_find_users_and_studies_by_id_or_name(store: Store) -> None:
    bob = store.create_user("bob", "password1")
    st = store.create_study("pilot", group_size=2, rankings_per_task=1)
    with store.session() as s:
        assert load_user(s, "bob").id == load_user(s, bob.id).id == bob.id
        assert load_study(s, "pilot").id == load_study(s, st.id).id == st.id
        with pytest.raises(NotFoundError, match="user 'carol' does not exist"):
            load_user(s, "carol")
        with pytest.raises(NotFoundError, match="study 99 does not exist"):
            load_study(s, 99)
        with pytest.raises(AnnotationError, match="user id must be a positive"):
            load_user(s, 0)
    store.set_user_active(bob.id, False)
    with store.session() as s:
        assert load_user(s, bob.id).username == "bob"  # a lookup, not a permission check
        with pytest.raises(PermissionDeniedError, match="deactivated"):
            load_user(s, bob.id, active=True)
    assert system_label("models/janus", "got-r1") == "models/janus:got-r1"


def test_study_validation(store: Store) -> None:
    st = store.create_study("pilot", group_size=4, rankings_per_task=3, control_rate=0.2)
    assert store.get_study("pilot") == st == store.get_study(st.id)
    with pytest.raises(ConflictError):
        store.create_study("pilot", group_size=4, rankings_per_task=3)
    for kwargs in (
        {"group_size": 1, "rankings_per_task": 1},
        {"group_size": 4, "rankings_per_task": 0},
        {"group_size": 4, "rankings_per_task": 1, "control_rate": 1.5},
        {"group_size": 10**6, "rankings_per_task": 1},
    ):
        with pytest.raises(AnnotationError):
            store.create_study("other", **kwargs)
    with pytest.raises(AnnotationError, match="study name"):
        store.create_study("x'); DELETE FROM studies; --", group_size=2, rankings_per_task=1)
    with pytest.raises(NotFoundError):
        store.get_study("' OR 1=1 --")
    assert [s.name for s in store.list_studies()] == ["pilot"]


def test_prompts_keep_hostile_text_verbatim(store: Store) -> None:
    st = store.create_study("p", group_size=2, rankings_per_task=1)
    texts = ["a cat'); DROP TABLE prompts; --", 'a dog "quoted" \\ and ünïcode']
    ids = store.add_prompts(st.id, [texts[0], {"prompt": texts[1], "tag": "single_object"}])
    assert store.list_prompts(st.id) == list(zip(ids, texts, strict=True))
    with pytest.raises(AnnotationError, match="limit"):
        store.add_prompts(st.id, ["x" * 100_000])
    with pytest.raises(AnnotationError, match="empty"):
        store.add_prompts(st.id, ["   "])
    with pytest.raises(AnnotationError, match="NUL"):
        store.add_prompts(st.id, ["a cat\x00"])
    assert len(store.list_prompts(st.id)) == 2
    meta = {"tag": "single_object", "include": [{"class": "cat", "count": 1}]}
    store.add_prompts(st.id, [{"prompt": "c", "metadata": None}, {"prompt": "d", "metadata": meta}])
    rows = store.prompt_rows(st.id)
    assert [m for _, _, m in rows] == [None, {"tag": "single_object"}, None, meta]
    with pytest.raises(AnnotationError, match="metadata"):
        store.add_prompts(st.id, [{"prompt": "e", "metadata": "not an object"}])


def test_candidates_store_the_whole_sample_and_images_once(store: Store, sample_factory) -> None:
    st = store.create_study("c", group_size=2, rankings_per_task=1)
    (pid,) = store.add_prompts(st.id, ["a red square"])
    a = sample_factory("a red square", "m1", "got-r1", seed=3, index=0)
    b = sample_factory("a red square", "m1", "got-r1", seed=3, index=0)  # identical image
    c = sample_factory("a red square", "m2", "direct", seed=4, index=1)
    reward = FakeReward([0.25, None, 0.75])
    ids = store.add_candidates(pid, [a, b, c], rewards={"fake": reward([a, b, c])})
    back = store.load_sample(ids[0])
    assert back.to_dict() == a.to_dict()
    assert back.image.tobytes() == a.image.tobytes()
    with store.session() as s:
        rows = s.scalars(select(Candidate).order_by(Candidate.id)).all()
        scores = s.execute(
            select(RewardScore.candidate_id, RewardScore.score, RewardScore.details).order_by(
                RewardScore.candidate_id
            )
        ).all()
    assert rows[0].image_sha256 == rows[1].image_sha256 != rows[2].image_sha256
    files = sorted((store.data_dir / "images").rglob("*.png"))
    assert len(files) == 2 and {f.stem for f in files} == {rows[0].image_sha256, rows[2].image_sha256}
    assert rows[2].model_id == "m2" and rows[2].recipe == "direct" and rows[2].seed == 4
    assert [sc for _, sc, _ in scores] == [0.25, None, 0.75]
    assert scores[0][2] == {"why": "sample 0", "nan": "nan"}
    store.add_reward_scores([ids[1]], "fake", FakeReward([0.5])([b]))  # upsert
    with store.session() as s:
        n = s.scalar(select(func.count()).select_from(RewardScore))
        assert s.scalar(select(RewardScore.score).where(RewardScore.candidate_id == ids[1])) == 0.5
    assert n == 3


def test_candidates_reject_mismatched_or_broken_samples(store: Store, sample_factory) -> None:
    st = store.create_study("c", group_size=2, rankings_per_task=1)
    (pid,) = store.add_prompts(st.id, ["a red square"])
    with pytest.raises(AnnotationError, match="differs"):
        store.add_candidates(pid, [sample_factory("a blue circle")])
    bad = sample_factory("a red square")
    bad.image_logprobs[0] = float("-inf")
    with pytest.raises(AnnotationError, match="non-finite"):
        store.add_candidates(pid, [bad])
    with pytest.raises(AnnotationError, match="Sample"):
        store.add_candidates(pid, [{"prompt": "a red square"}])
    with pytest.raises(NotFoundError):
        store.add_candidates(999, [sample_factory("a red square")])
    with store.session() as s:
        assert s.scalar(select(func.count()).select_from(Candidate)) == 0


def test_build_tasks_layouts(store: Store, populate_study) -> None:
    sid, tasks = populate_study(store, n_prompts=2, per_system=4, group_size=4)
    # mixed: per prompt 8 candidates from 2 systems -> 2 tasks, each with 2 of each system
    assert len(tasks) == 4
    with store.session() as s:
        for t in tasks:
            systems = (
                s.execute(
                    text(
                        "SELECT c.model_id FROM task_candidates tc JOIN candidates c "
                        "ON c.id = tc.candidate_id WHERE tc.task_id = :t"
                    ),
                    {"t": t},
                )
                .scalars()
                .all()
            )
            assert sorted(systems) == ["m1", "m1", "m2", "m2"]
    assert store.build_tasks(sid) == []  # every candidate is already in a task
    sid2, _tasks2 = populate_study(store, n_prompts=1, per_system=4, group_size=4, name="s2")
    with store.session() as s:
        s.execute(text("DELETE FROM task_candidates"))
        s.execute(text("DELETE FROM tasks"))
    per = store.build_tasks(sid2, layout="per_system")
    with store.session() as s:
        for t in per:
            models = set(
                s.execute(
                    text(
                        "SELECT c.model_id FROM task_candidates tc JOIN candidates c "
                        "ON c.id = tc.candidate_id WHERE tc.task_id = :t"
                    ),
                    {"t": t},
                ).scalars()
            )
            assert len(models) == 1
    with pytest.raises(AnnotationError, match="layout"):
        store.build_tasks(sid2, layout="random")


def test_create_task_validation(store: Store, populate_study) -> None:
    sid, _ = populate_study(store, n_prompts=2, per_system=1, group_size=2)
    sid2, _ = populate_study(store, n_prompts=1, per_system=1, group_size=2, name="other")
    with store.session() as s:
        c = s.execute(
            text(
                "SELECT c.id, c.prompt_id, p.study_id FROM candidates c JOIN prompts p "
                "ON p.id = c.prompt_id ORDER BY c.id"
            )
        ).all()
    mine = [r for r in c if r.study_id == sid]
    theirs = [r for r in c if r.study_id == sid2]
    with pytest.raises(AnnotationError, match="more than once"):
        store.create_task(sid, [mine[0].id, mine[0].id])
    with pytest.raises(AnnotationError, match="share one prompt"):
        store.create_task(sid, [mine[0].id, mine[2].id])
    with pytest.raises(AnnotationError, match="study"):
        store.create_task(sid, [mine[0].id, theirs[0].id])
    with pytest.raises(NotFoundError):
        store.create_task(sid, [mine[0].id, 10_000])
    with pytest.raises(AnnotationError, match=r"2\.\.2"):
        store.create_task(sid, [mine[0].id])
    with pytest.raises(AnnotationError, match="control_best"):
        store.create_task(sid, [mine[0].id, mine[2].id], control_best=mine[3].id)
    t = store.create_task(sid, [mine[0].id, mine[2].id], control_best=mine[2].id)
    assert t > 0


def test_control_tasks_mix_other_prompts(store: Store, populate_study) -> None:
    sid, _ = populate_study(store, n_prompts=3, per_system=2, group_size=4)
    ids = store.add_control_tasks(sid, 5, seed=1)
    assert len(ids) == 5
    with store.session() as s:
        for t in ids:
            best, prompt = s.execute(
                text("SELECT control_best_id, prompt_id FROM tasks WHERE id=:t"), {"t": t}
            ).one()
            members = s.execute(
                text(
                    "SELECT c.id, c.prompt_id FROM task_candidates tc JOIN candidates c ON "
                    "c.id = tc.candidate_id WHERE tc.task_id = :t"
                ),
                {"t": t},
            ).all()
            assert len(members) == 4 and best in {m.id for m in members}
            assert [m.prompt_id for m in members].count(prompt) == 1  # only the best matches
    assert ids != store.add_control_tasks(sid, 5, seed=2)


# ---------------------------------------------------------------------- roles (issue 19, item 11)


def test_researcher_only_operations_refuse_annotators(store: Store, populate_study, sample_factory) -> None:
    sid, _ = populate_study(store, n_prompts=2, per_system=1, group_size=2)
    ann = store.create_user("ann", "password123")
    rita = store.create_user("rita", "password123", role="researcher")
    (pid, *_) = [p for p, _ in store.list_prompts(sid)]
    sample = sample_factory("a red square number 0")
    calls = {
        "create_study": lambda a: store.create_study("x", group_size=2, rankings_per_task=1, actor=a),
        "create_user": lambda a: store.create_user("mallory", "password123", role="researcher", actor=a),
        "set_user_active": lambda a: store.set_user_active("rita", False, actor=a),
        "reset_password": lambda a: store.reset_password("rita", "new-password", actor=a),
        "archive_study": lambda a: store.archive_study(sid, actor=a),
        "delete_study": lambda a: store.delete_study(sid, force=True, actor=a),
        "add_prompts": lambda a: store.add_prompts(sid, ["new prompt"], actor=a),
        "add_candidates": lambda a: store.add_candidates(pid, [sample], actor=a),
        "add_reward_scores": lambda a: store.add_reward_scores(
            [1], "r", SimpleNamespace(scores=[1.0], details=[{}]), actor=a
        ),
        "create_task": lambda a: store.create_task(sid, [1, 2], actor=a),
        "build_tasks": lambda a: store.build_tasks(sid, actor=a),
        "add_control_tasks": lambda a: store.add_control_tasks(sid, 1, actor=a),
        "require_researcher": lambda a: store.require_researcher(a, "exporting"),
    }
    before = _table_counts(store)
    for name, call in calls.items():
        for who in (ann.id, "ann"):
            with pytest.raises(PermissionDeniedError, match="for researchers"):
                call(who)
        assert _table_counts(store) == before, name
    # created_by (what the web UI passed before actor existed) is checked too
    with pytest.raises(PermissionDeniedError, match="for researchers"):
        store.create_study("x", group_size=2, rankings_per_task=1, created_by=ann.id)
    assert store.get_user("rita").active and store.authenticate("rita", "password123")
    # a researcher may; the creator is recorded
    st = store.create_study("by rita", group_size=2, rankings_per_task=1, actor="rita")
    with store.session() as s:
        assert load_study(s, st.id).created_by == rita.id
    assert store.require_researcher(rita.id).username == "rita"
    store.add_prompts(st.id, ["p"], actor=rita.id)
    # a deactivated researcher may not; None (the administrator: CLI, scripts) may
    store.set_user_active("rita", False)
    with pytest.raises(PermissionDeniedError, match="deactivated"):
        store.add_prompts(st.id, ["q"], actor="rita")
    assert store.require_researcher(None) is None
    # anyone may change their own password, not another's
    store.reset_password("ann", "ann-new-password", actor="ann")
    assert store.authenticate("ann", "ann-new-password") is not None


def _table_counts(store: Store) -> dict[str, int]:
    with store.session() as s:
        return {
            t.name: s.scalar(select(func.count()).select_from(t)) for t in Base.metadata.sorted_tables
        } | {"archived": s.scalar(text("SELECT count(*) FROM studies WHERE archived_at IS NOT NULL"))}


# ---------------------------------------------------------------------- smaller (issue 19, item 12)


def test_usernames_and_study_names_refuse_whitespace_and_control_characters(store: Store) -> None:
    store.create_user("ann", "password123")
    for bad in ("ann\n", "ann ", " ann", "an\tn", "ann\r", "ann\x00", "ann\x1b"):
        with pytest.raises(AnnotationError, match="username"):
            store.create_user(bad, "password123")
        assert store.authenticate(bad, "password123") is None
    store.create_study("pilot", group_size=2, rankings_per_task=1)
    for bad in ("pilot\n", "pi\nlot", "pilot\t"):
        with pytest.raises(AnnotationError, match="study name"):
            store.create_study(bad, group_size=2, rankings_per_task=1)
    assert [u.username for u in store.list_users()] == ["ann"]


def test_hostile_values_raise_annotation_errors_on_every_backend(store: Store, sample_factory) -> None:
    import dataclasses

    import numpy as np

    st = store.create_study("c", group_size=2, rankings_per_task=1)
    (pid,) = store.add_prompts(st.id, ["p"])

    def smp(**kw):
        return dataclasses.replace(sample_factory("p"), **kw)

    def out(scores):
        return SimpleNamespace(scores=scores, details=[{}] * len(scores))

    study_kw = {"group_size": 2, "rankings_per_task": 1}
    cases = [
        (lambda: store.create_study("s1", seed="abc", **study_kw), "seed"),
        (lambda: store.create_study("s2", seed=2**70, **study_kw), "seed"),
        (lambda: store.create_study("s3", seed=np.array([1, 2]), **study_kw), "seed"),
        (lambda: store.create_study("s4", seed=1.5, **study_kw), "seed"),
        (lambda: store.create_study("s" * 129, **study_kw), "study name"),
        (lambda: store.create_user("u" * 65, "password123"), "username"),
        (lambda: store.create_user("u", "p" * 2000), "password"),
        (lambda: store.add_prompts(st.id, [{"prompt": "q", "metadata": {"n": np.int64(1)}}]), "JSON"),
        (lambda: store.add_prompts(st.id, [{"prompt": "q", "metadata": {"x": float("nan")}}]), "JSON"),
        (lambda: store.add_candidates(pid, [smp(model_id="m" * 600)]), "model_id"),
        (lambda: store.add_candidates(pid, [smp(model_id="m\x00")]), "model_id"),
        (lambda: store.add_candidates(pid, [smp(recipe="r" * 65)]), "recipe"),
        (lambda: store.add_candidates(pid, [smp(seed=2**70)]), "seed"),
        (lambda: store.add_candidates(pid, [smp(seed=np.int64(3))]), "JSON"),
        (lambda: store.add_candidates(pid, [smp(index=2**40)]), "index"),
        (lambda: store.add_candidates(pid, [smp()], rewards={"r" * 65: out([1.0])}), "reward name"),
        (lambda: store.add_candidates(pid, [smp()], rewards={"r": out(["abc"])}), "score"),
        (lambda: store.add_candidates(pid, [smp()], rewards={"r": out(np.ones((1, 2)))}), "score"),
        (lambda: store.add_candidates(pid, np.array([1, 2])), "Sample"),
        (lambda: store.add_control_tasks(st.id, "3"), "control tasks"),
        (lambda: store.set_user_active("nobody", "yes"), "True or False"),
    ]
    for call, match in cases:
        with pytest.raises(AnnotationError, match=match):
            call()
    with store.session() as s:
        assert s.scalar(select(func.count()).select_from(Candidate)) == 0
    assert [x.name for x in store.list_studies()] == ["c"]
    assert not list((store.data_dir / "images").rglob("*.png"))  # nothing written for refused input


def test_add_candidates_validates_first_and_removes_its_images_on_failure(
    store: Store, sample_factory
) -> None:
    st = store.create_study("c", group_size=2, rankings_per_task=1)
    (pid,) = store.add_prompts(st.id, ["a red square"])
    kept = sample_factory("a red square", seed=1)
    store.add_candidates(pid, [kept])
    files_before = sorted((store.data_dir / "images").rglob("*.png"))
    assert len(files_before) == 1
    # a mismatched second sample: refused before any image is written
    with pytest.raises(AnnotationError, match="differs"):
        store.add_candidates(pid, [sample_factory("a red square", seed=2), sample_factory("other")])
    assert sorted((store.data_dir / "images").rglob("*.png")) == files_before
    # a failure inside the transaction (after images were written) removes only this call's images
    from sqlalchemy import event
    from sqlalchemy.orm import Session

    def explode(session, _ctx, _instances) -> None:
        if any(isinstance(o, Candidate) for o in session.new):
            raise RuntimeError("disk full while storing")

    event.listen(Session, "before_flush", explode)
    try:
        with pytest.raises(RuntimeError, match="disk full"):
            store.add_candidates(pid, [kept, sample_factory("a red square", seed=3)])
    finally:
        event.remove(Session, "before_flush", explode)
    assert sorted((store.data_dir / "images").rglob("*.png")) == files_before  # kept's image stays


def test_delete_study_removes_its_rows_and_unshared_images(store: Store, populate_study) -> None:
    from annotation.workflow import next_task, submit_ranking

    sid, _ = populate_study(store, n_prompts=2, per_system=1, group_size=2, rankings_per_task=1)
    other, _ = populate_study(store, n_prompts=1, per_system=1, group_size=2, name="other")
    u = store.create_user("ann", "password123").id
    view = next_task(store, u, sid)
    submit_ranking(store, u, sid, view.task_id, [[c.id] for c in view.candidates])
    n_images = len(list((store.data_dir / "images").rglob("*.png")))
    with pytest.raises(ConflictError, match="archive"):
        store.delete_study(sid)
    counts = store.delete_study("s1", force=True)
    assert counts["rankings"] == 1 and counts["tasks"] == 2 and counts["prompts"] == 2
    assert counts["candidates"] == 4
    # "a red square number 0" of study "other" shares its images: only prompt 1's two go
    assert counts["images"] == 2 and len(list((store.data_dir / "images").rglob("*.png"))) == n_images - 2
    with pytest.raises(NotFoundError):
        store.get_study(sid)
    assert [s.id for s in store.list_studies()] == [other]
    assert store.create_study("s1", group_size=2, rankings_per_task=1).name == "s1"  # name free again


def test_find_study_reads_names_first_then_ids_and_explicit_prefixes(store: Store) -> None:
    first = store.create_study("pilot", group_size=2, rankings_per_task=1)
    named_one = store.create_study(str(first.id), group_size=2, rankings_per_task=1)  # a study named "1"
    assert store.find_study(str(first.id)).id == named_one.id  # a bare ref is a name first
    assert store.find_study(f"name:{first.id}").id == named_one.id
    assert store.find_study(f"id:{first.id}").id == first.id
    assert store.find_study("pilot").id == first.id
    assert store.find_study(str(named_one.id)).id == named_one.id  # no such name: read as an id
    with pytest.raises(NotFoundError):
        store.find_study("nope")
    with pytest.raises(AnnotationError):
        store.find_study("id:x")


def _open_when_released(url: str, barrier, results) -> None:
    """Child process: wait for the others, then open (and migrate) the database at once."""
    try:
        barrier.wait(timeout=60)
        init_db(url).dispose()
        results.put("ok")
    except Exception as exc:  # reported to the parent, which asserts on it
        results.put(f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}")


def test_processes_opening_a_new_database_at_once_all_succeed(empty_db_url: str) -> None:
    """Eight processes migrating one empty database together: every open succeeds (on PostgreSQL
    they raced in the first migration and most failed with a unique violation)."""
    ctx = multiprocessing.get_context("fork")
    barrier, results = ctx.Barrier(8), ctx.Queue()
    procs = [ctx.Process(target=_open_when_released, args=(empty_db_url, barrier, results)) for _ in range(8)]
    for p in procs:
        p.start()
    outcomes = sorted(results.get(timeout=120) for _ in procs)
    for p in procs:
        p.join(timeout=60)
    assert outcomes == ["ok"] * 8
    engine = make_engine(empty_db_url)
    try:
        assert current_revision(engine) == "0004"
        with engine.connect() as conn:
            assert compare_metadata(MigrationContext.configure(conn), Base.metadata) == []
    finally:
        engine.dispose()

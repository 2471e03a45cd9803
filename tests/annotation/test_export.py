"""Export (tables in three formats, an image folder ``datasets`` loads as-is) and the CLI."""

from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace

import pandas as pd
import pytest
from PIL import Image
from sqlalchemy import select

from annotation.cli import main as cli_main
from annotation.errors import AnnotationError, PermissionDeniedError
from annotation.export import export_study
from annotation.models import Task
from annotation.populate import derive_seed, load_rewards, parse_system
from annotation.populate import populate_study as generate_candidates
from annotation.store import Store
from annotation.workflow import next_task, progress, submit_ranking


def _run_study(store: Store, populate_study) -> int:
    """A finished small study: ann_a and ann_b rank every task (ann_b skips one); ann_c ranks
    up to 8. ann_a and ann_c put a control's known best first, ann_b puts it last (and is excluded)."""
    sid, _tasks = populate_study(
        store, n_prompts=3, per_system=2, group_size=4, rankings_per_task=3, control_rate=0.5
    )
    store.add_control_tasks(sid, 4, seed=0)
    with store.session() as s:
        best = dict(s.execute(select(Task.id, Task.control_best_id).where(Task.is_control)).all())
    for name, limit in (("ann_a", 99), ("ann_b", 99), ("ann_c", 8)):
        uid = store.create_user(name, "password123").id
        for n in range(limit):
            view = next_task(store, uid, sid)
            if view is None:
                break
            ids = sorted(c.id for c in view.candidates)
            if view.task_id in best:
                ids.remove(best[view.task_id])
                ids = [*ids, best[view.task_id]] if name == "ann_b" else [best[view.task_id], *ids]
            elif name == "ann_b" and n == 0:
                submit_ranking(store, uid, sid, view.task_id, skipped=True)
                continue
            submit_ranking(store, uid, sid, view.task_id, [[i] for i in ids], time_taken_s=2.0)
    return sid


@pytest.mark.parametrize("fmt", ["csv", "parquet", "jsonl"])
def test_export_tables_round_trip(fmt: str, tmp_path: Path, populate_study) -> None:
    store = Store(f"sqlite:///{tmp_path / 'db.sqlite'}", tmp_path / "data", password_cost=16)
    sid = _run_study(store, populate_study)
    paths = export_study(store, sid, tmp_path / "out", fmt, n_boot=30)
    read = {"csv": pd.read_csv, "parquet": pd.read_parquet, "jsonl": lambda p: pd.read_json(p, lines=True)}[
        fmt
    ]
    rankings = read(paths["rankings"])
    n_rankings = rankings["ranking_id"].nunique()
    per_user = progress(store, sid)["annotators"]
    assert n_rankings == sum(u["submitted"] for u in per_user.values())
    skipped = rankings[rankings["skipped"].astype(bool)]
    assert len(skipped) == 1 and skipped["rank"].isna().all()
    ranked = rankings[~rankings["skipped"].astype(bool)]
    assert (ranked.groupby("ranking_id").size() == 4).all()
    pairs = read(paths["pairwise"])
    regular = ranked[~ranked["is_control"].astype(bool)]
    assert len(pairs) == 6 * regular["ranking_id"].nunique()  # C(4, 2) pairs per ranking
    assert set(pairs["score_a"]) <= {0.0, 0.5, 1.0}
    ratings = read(paths["ratings"])
    assert set(ratings["level"]) == {"system", "model_id", "recipe"}
    assert set(ratings.loc[ratings["level"] == "system", "item"]) == {"m1:direct", "m2:got-r1"}
    assert (ratings["ci_low"] <= ratings["theta"]).all() and (ratings["theta"] <= ratings["ci_high"]).all()
    cands = read(paths["candidates"])
    assert len(cands) == 12
    sample = json.loads(cands.iloc[0]["sample_json"])
    assert sample["image_token_ids"] == [3, 1, 4, 1] and sample["cot_logprobs"] == [-0.5, -1.25]
    summary = json.loads(paths["summary"].read_text())
    assert summary["study"] == "s1" and summary["rankings"] == n_rankings
    assert summary["excluded_annotators"] == ["ann_b"]
    assert set(pairs.loc[pairs["excluded"].astype(bool), "annotator"]) == {"ann_b"}
    controls = read(paths["controls"]).set_index("annotator")
    assert controls.loc["ann_a", "pass_rate"] == 1.0 and controls.loc["ann_b", "pass_rate"] == 0.0
    assert summary["alpha_ordinal"] == pytest.approx(1.0)  # ann_a and ann_c agree on every task
    store.close()


def test_image_folder_loads_unchanged_with_datasets(tmp_path: Path, populate_study) -> None:
    datasets = pytest.importorskip("datasets")
    store = Store(f"sqlite:///{tmp_path / 'db.sqlite'}", tmp_path / "data", password_cost=16)
    sid = _run_study(store, populate_study)
    paths = export_study(store, sid, tmp_path / "out", "jsonl", n_boot=0)
    ds = datasets.load_dataset(
        "imagefolder", data_dir=str(paths["images"]), cache_dir=str(tmp_path / "hf-cache"), split="train"
    )
    assert len(ds) == 12
    assert {"image", "candidate_id", "prompt", "model_id", "recipe", "mean_rank", "rewards"} <= set(
        ds.column_names
    )
    row = ds.filter(lambda r: r["candidate_id"] == 1)[0]
    original = store.load_sample(1).image
    assert row["image"].size == original.size
    assert row["image"].convert("RGB").tobytes() == original.tobytes()
    assert row["prompt"] == "a red square number 0" and row["model_id"] == "m1"
    ranked = [r for r in ds if r["times_ranked"] > 0]
    assert ranked and all(1.0 <= r["mean_rank"] <= 4.0 for r in ranked)
    store.close()


def test_populate_study_uses_the_source_and_reward_hooks(store: Store, sample_factory) -> None:
    st = store.create_study("gen", group_size=3, rankings_per_task=1, seed=11)
    meta = {"tag": "counting", "include": [{"class": "circle", "count": 2, "color": "blue"}]}
    store.add_prompts(st.id, ["a red square", {"prompt": "two blue circles", "metadata": meta}])
    calls = []

    def source(model: str, prompt: str, recipe: str, n: int, seed: int, metadata):
        calls.append((model, prompt, recipe, n, seed, metadata))
        return [sample_factory(prompt, model, recipe, seed=seed, index=i) for i in range(n)]

    def reward(samples):
        return SimpleNamespace(
            scores=[float(s.index) for s in samples], details=[{"i": s.index} for s in samples]
        )

    systems = [parse_system("models/a:direct"), parse_system("/abs/b:c:got-r1")]
    assert systems == [("models/a", "direct"), ("/abs/b:c", "got-r1")]
    ids = generate_candidates(store, st.id, systems, source, seed=11, rewards={"idx": reward})
    assert len(ids) == 2 * 2 * 3 and len(calls) == 4
    assert calls[0] == ("models/a", "a red square", "direct", 3, derive_seed(11, 0, systems[0]), None)
    assert calls[2][1] == "two blue circles" and calls[2][5] == meta
    assert len({c[4] for c in calls}) == 4  # a distinct seed per (prompt, system)
    tasks = store.build_tasks(st.id)
    assert len(tasks) == 4
    back = store.load_sample(ids[4])
    assert back.recipe == "got-r1" and back.model_id == "/abs/b:c"
    from annotation.tables import candidates_frame

    rewards = [json.loads(r) for r in candidates_frame(store, st.id)["rewards"]]
    assert [r["idx"] for r in rewards[:3]] == [0.0, 1.0, 2.0]
    with pytest.raises(ValueError, match="MODEL:RECIPE"):
        parse_system("no-recipe")
    with pytest.raises(ValueError, match="unknown reward"):
        load_rewards(["no_such_reward"])


def test_cli_end_to_end_with_a_tiny_model(tmp_path: Path, monkeypatch, capsys) -> None:
    pytest.importorskip("torch")
    from reasongen.tiny import save_tiny

    model_a = save_tiny(tmp_path / "tiny_a", seed=0)
    model_b = save_tiny(tmp_path / "tiny_b", seed=1)
    meta = {"tag": "single_object", "include": [{"class": "circle", "count": 1, "color": "green"}]}
    (tmp_path / "prompts.jsonl").write_text(
        json.dumps({"prompt": "a red square"})
        + "\n"
        + json.dumps({"prompt": "a green circle", **meta})
        + "\n"
    )
    base = ["--db", f"sqlite:///{tmp_path / 'cli.db'}", "--data-dir", str(tmp_path / "data")]
    monkeypatch.setenv("ANN_PW", "s3cret-password")
    assert cli_main([*base, "init"]) == 0
    assert cli_main([*base, "user", "add", "rita", "--role", "researcher", "--password-env", "ANN_PW"]) == 0
    assert cli_main([*base, "user", "add", "rita", "--password-env", "ANN_PW"]) == 2  # duplicate
    create = f"study create --name pilot --prompts {tmp_path / 'prompts.jsonl'} --system {model_a}:direct "
    create += f"--system {model_b}:direct --group-size 4 --samples 2 --rankings-per-task 1 --controls 2"
    assert cli_main([*base, *create.split(), "--device", "cpu"]) == 0
    out = capsys.readouterr().out
    assert "2 prompts, 2 tasks, 2 control tasks" in out
    store = Store(f"sqlite:///{tmp_path / 'cli.db'}", tmp_path / "data")
    rita = store.authenticate("rita", "s3cret-password")
    assert rita is not None and rita.role == "researcher"
    study = store.get_study("pilot")
    while (view := next_task(store, rita.id, study.id)) is not None:
        assert len(view.candidates) == 4 and all(Path(c.image_path).is_file() for c in view.candidates)
        submit_ranking(store, rita.id, study.id, view.task_id, [[c.id] for c in view.candidates])
    sample = store.load_sample(1)
    assert sample.model_id == str(model_a) and len(sample.image_token_ids) == 16
    assert sample.prompt == "a red square" and sample.metadata is None
    last = store.load_sample(8)  # the second prompt's candidates carry its metadata
    assert last.prompt == "a green circle" and last.metadata == meta
    store.close()
    assert cli_main([*base, "progress", "--study", "pilot"]) == 0
    prog = json.loads(capsys.readouterr().out)
    assert prog["rankings_done"] == prog["rankings_wanted"] == 2
    assert cli_main([*base, "stats", "--study", "pilot", "--n-boot", "20"]) == 0
    assert "Krippendorff" in capsys.readouterr().out
    assert (
        cli_main(
            [
                *base,
                "export",
                "--study",
                "pilot",
                "--format",
                "csv",
                "--out",
                str(tmp_path / "exp"),
                "--n-boot",
                "20",
            ]
        )
        == 0
    )
    assert len(pd.read_csv(tmp_path / "exp" / "candidates.csv")) == 8
    assert (
        cli_main([*base, "export", "--study", "nope", "--format", "csv", "--out", str(tmp_path / "exp2")])
        == 2
    )


def test_export_of_a_study_without_rankings(tmp_path: Path, populate_study) -> None:
    store = Store(f"sqlite:///{tmp_path / 'db.sqlite'}", tmp_path / "data", password_cost=16)
    sid, _ = populate_study(store)
    paths = export_study(store, sid, tmp_path / "out", "parquet", n_boot=10)
    summary = json.loads(paths["summary"].read_text())
    assert summary["rankings"] == 0 and summary["alpha_ordinal"] is None
    assert pd.read_parquet(paths["rankings"]).empty and pd.read_parquet(paths["ratings"]).empty
    assert len(pd.read_parquet(paths["candidates"])) == 12
    lines = (paths["images"] / "metadata.jsonl").read_text().splitlines()
    assert len(lines) == 12 and all(json.loads(x)["times_ranked"] == 0 for x in lines)
    store.close()


def _tree(folder: Path) -> dict[str, bytes]:
    """Every file under ``folder`` (relative path → bytes)."""
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def _store_with_study(
    root: Path, sample_factory, prompts: list[str], per_prompt: int = 2
) -> tuple[Store, int]:
    store = Store(f"sqlite:///{root / 'db.sqlite'}", root / "data", password_cost=16)
    st = store.create_study("s", group_size=2, rankings_per_task=1)
    for pid, text in zip(store.add_prompts(st.id, prompts), prompts, strict=True):
        store.add_candidates(
            pid, [sample_factory(text, seed=len(prompts), index=k) for k in range(per_prompt)]
        )
    return store, st.id


def test_export_leaves_out_candidates_without_an_image(tmp_path: Path, sample_factory) -> None:
    store = Store(f"sqlite:///{tmp_path / 'db.sqlite'}", tmp_path / "data", password_cost=16)
    st = store.create_study("s", group_size=2, rankings_per_task=1)
    (pid,) = store.add_prompts(st.id, ["a red square"])
    no_image = sample_factory("a red square", index=1)
    no_image.image = None
    with_image, without = store.add_candidates(pid, [sample_factory("a red square"), no_image])
    paths = export_study(store, st.id, tmp_path / "out", "csv", n_boot=0)
    assert sorted(p.name for p in paths["images"].iterdir()) == [f"{with_image}.png", "metadata.jsonl"]
    (line,) = (paths["images"] / "metadata.jsonl").read_text().splitlines()
    assert json.loads(line)["candidate_id"] == with_image
    cands = pd.read_csv(paths["candidates"]).set_index("candidate_id")
    assert len(cands) == 2 and pd.isna(cands.loc[without, "image_path"])
    assert json.loads(paths["summary"].read_text())["candidates_without_image"] == 1
    store.close()


def test_re_export_replaces_the_previous_export_entirely(tmp_path: Path, sample_factory) -> None:
    """Another study exported into a used folder: no image of the first one is left or reused,
    so ``imagefolder`` pairs every prompt with its own image."""
    first, sid1 = _store_with_study(tmp_path / "a", sample_factory, ["one", "two", "three"])
    second, sid2 = _store_with_study(tmp_path / "b", sample_factory, ["four"])  # same candidate ids 1, 2
    out = tmp_path / "exports" / "study"
    export_study(first, sid1, out, "jsonl", n_boot=0)
    assert len(list((out / "images").glob("*.png"))) == 6
    paths = export_study(second, sid2, out, "csv", n_boot=0)
    assert sorted(p.name for p in out.iterdir()) == sorted(
        [
            "rankings.csv",
            "pairwise.csv",
            "ratings.csv",
            "candidates.csv",
            "controls.csv",
            "agreement.csv",
            "summary.json",
            "images",
        ]
    )
    meta = [json.loads(x) for x in (paths["images"] / "metadata.jsonl").read_text().splitlines()]
    assert sorted(p.name for p in paths["images"].glob("*.png")) == sorted(m["file_name"] for m in meta)
    for m in meta:
        assert m["prompt"] == "four"
        stored = second.load_sample(m["candidate_id"]).image
        with Image.open(paths["images"] / m["file_name"]) as im:
            assert im.convert("RGB").tobytes() == stored.convert("RGB").tobytes()
    assert sorted(p.name for p in out.parent.iterdir()) == ["study"]  # no staging or old folder left
    first.close()
    second.close()


def test_a_failed_export_changes_nothing(tmp_path: Path, sample_factory) -> None:
    store, sid = _store_with_study(tmp_path / "a", sample_factory, ["one", "two"])
    exports = tmp_path / "exports"
    export_study(store, sid, exports / "study", "parquet", n_boot=0)
    before = _tree(exports)
    victim = next((tmp_path / "a" / "data" / "images").rglob("*.png"))
    victim.unlink()  # a stored image gone missing: the export must fail, not half-write
    with pytest.raises(AnnotationError, match="missing"):
        export_study(store, sid, exports / "study", "csv", n_boot=0)
    with pytest.raises(AnnotationError, match="missing"):
        export_study(store, sid, exports / "new", "csv", n_boot=0)
    assert _tree(exports) == before
    assert sorted(p.name for p in exports.iterdir()) == ["study"]
    store.close()


def test_export_refuses_a_folder_that_is_not_an_export(tmp_path: Path, sample_factory) -> None:
    store, sid = _store_with_study(tmp_path / "a", sample_factory, ["one"])
    out = tmp_path / "mine"
    out.mkdir()
    (out / "notes.txt").write_text("keep me")
    with pytest.raises(AnnotationError, match=r"refusing to replace .*notes\.txt"):
        export_study(store, sid, out, "csv", n_boot=0)
    assert _tree(out) == {"notes.txt": b"keep me"}
    (tmp_path / "file").write_text("x")
    with pytest.raises(AnnotationError, match="is a file"):
        export_study(store, sid, tmp_path / "file", "csv", n_boot=0)
    data = str(tmp_path / "a" / "data")
    argv = ["--db", store.url, "--data-dir", data, "export", "--study", "s", "--out", str(out)]
    assert cli_main([*argv, "--n-boot", "0"]) == 2
    assert _tree(out) == {"notes.txt": b"keep me"}
    store.close()


def test_empty_jsonl_tables_keep_their_columns_in_the_summary(tmp_path: Path, populate_study) -> None:
    store = Store(f"sqlite:///{tmp_path / 'db.sqlite'}", tmp_path / "data", password_cost=16)
    sid, _ = populate_study(store)
    jsonl = export_study(store, sid, tmp_path / "jsonl", "jsonl", n_boot=0)
    csv = export_study(store, sid, tmp_path / "csv", "csv", n_boot=0)
    tables = json.loads(jsonl["summary"].read_text())["tables"]
    assert jsonl["ratings"].read_text() == ""  # no rows: the file itself cannot say its columns
    assert tables["ratings"] == {
        "file": "ratings.jsonl",
        "rows": 0,
        "columns": ["level", "item", "theta", "ci_low", "ci_high", "comparisons", "win_rate"],
    }
    for name in ("rankings", "pairwise", "ratings", "candidates", "controls"):
        assert tables[name]["columns"] == list(pd.read_csv(csv[name]).columns), name
    assert tables["candidates"]["rows"] == 12
    store.close()


def test_export_refuses_annotators_before_writing_anything(
    store: Store, populate_study, tmp_path: Path
) -> None:
    sid, _tasks = populate_study(store, n_prompts=2, group_size=2, rankings_per_task=1)
    store.create_user("ann", "pw-ann-123", "annotator")
    store.create_user("rita", "pw-rita-123", "researcher")
    with pytest.raises(PermissionDeniedError):
        export_study(store, sid, tmp_path / "denied", "csv", n_boot=0, actor="ann")
    assert not (tmp_path / "denied").exists()
    paths = export_study(store, sid, tmp_path / "ok", "csv", n_boot=0, actor="rita")
    assert Path(paths["summary"]).is_file()


def test_rankings_table_carries_skip_reasons_arena_ties_and_edits(store: Store, populate_study) -> None:
    from annotation.annotator import edit_ranking
    from annotation.tables import rankings_frame

    sid, _tasks = populate_study(store, n_prompts=3, per_system=1, group_size=2, rankings_per_task=1)
    uid = store.create_user("ann", "password123").id
    first = next_task(store, uid, sid)
    submit_ranking(store, uid, sid, first.task_id, skipped=True, skip_reason="image missing: blank")
    second = next_task(store, uid, sid)
    ids = [c.id for c in second.candidates]
    res = submit_ranking(store, uid, sid, second.task_id, {ids[0]: 1, ids[1]: 1}, both_bad=True)
    third = next_task(store, uid, sid)
    ids3 = [c.id for c in third.candidates]
    res3 = submit_ranking(store, uid, sid, third.task_id, [ids3[0], ids3[1]])
    edit_ranking(store, uid, res3.ranking_id, [ids3[1], ids3[0]])
    df = rankings_frame(store, sid)
    skipped = df[df["skipped"]]
    assert skipped["skip_reason"].tolist() == ["image missing: blank"]
    assert df.loc[df["ranking_id"] == res.ranking_id, "both_bad"].tolist() == [True, True]
    edited = df[df["ranking_id"] == res3.ranking_id]
    assert edited["edited_at"].notna().all() and not edited["both_bad"].any()
    assert df.loc[df["ranking_id"] != res3.ranking_id, "edited_at"].isna().all()
    assert edited.sort_values("rank")["candidate_id"].tolist() == [ids3[1], ids3[0]]


def test_simulated_annotators_are_labelled_in_the_export_and_counted_only_when_asked(
    store: Store, populate_study, tmp_path: Path
) -> None:
    sid, _tasks = populate_study(store, n_prompts=3, per_system=1, group_size=2, rankings_per_task=2)
    for name, simulated in (("person", False), ("panel", True)):
        uid = store.create_user(name, "password123", simulated=simulated).id
        while (view := next_task(store, uid, sid)) is not None:
            ids = sorted(c.id for c in view.candidates)
            submit_ranking(store, uid, sid, view.task_id, ids if simulated else ids[::-1])
    out = export_study(store, sid, tmp_path / "people", "csv", n_boot=0)
    summary = json.loads(Path(out["summary"]).read_text())
    assert summary["simulated_annotators"] == ["panel"] and summary["statistics_include_simulated"] is False
    rankings = pd.read_csv(out["rankings"])
    assert set(rankings.loc[rankings["annotator_simulated"], "annotator"]) == {"panel"}
    assert set(rankings["annotator"]) == {"person", "panel"}  # every row is kept, labelled
    pairs = pd.read_csv(out["pairwise"])
    assert (pairs["excluded"] == pairs["annotator_simulated"]).all() and pairs["annotator_simulated"].any()
    ratings = pd.read_csv(out["ratings"])
    people_wins = ratings[ratings["level"] == "system"].set_index("item")["win_rate"]
    assert sorted(people_wins.tolist()) == [0.0, 1.0]  # one annotator: no disagreement
    both = export_study(store, sid, tmp_path / "all", "csv", n_boot=0, include_simulated=True)
    assert json.loads(Path(both["summary"]).read_text())["statistics_include_simulated"] is True
    all_wins = pd.read_csv(both["ratings"]).query("level == 'system'")["win_rate"]
    assert sorted(all_wins.tolist()) == [0.5, 0.5]
    # The agreement table says whose rankings it is on; person and panel always disagree.
    assert pd.read_csv(out["agreement"])["annotators"].tolist() == ["people"]
    ceiling = pd.read_csv(both["agreement"]).iloc[0]
    assert ceiling["annotators"] == "people + simulated" and ceiling["accuracy"] == 0.0


def test_the_export_has_each_rewards_agreement_beside_the_ceiling(
    store: Store, make_shapes_study, tmp_path
) -> None:
    from annotation.scoring import build_rewards, score_study
    from annotation.simulate import simulate_panel

    sid, _ = make_shapes_study(store, n_prompts=3, rankings_per_task=2)
    simulate_panel(store, sid, "careful:2", seed=0)
    assert score_study(store, sid, build_rewards("shapes")) == {"shapes": 12}
    out = export_study(store, sid, tmp_path / "x", "jsonl", n_boot=20, include_simulated=True)
    rows = [json.loads(line) for line in Path(out["agreement"]).read_text().splitlines()]
    assert [(r["predictor"], r["kind"], r["annotators"]) for r in rows] == [
        ("human–human ceiling", "ceiling", "simulated"),
        ("shapes", "reward", "simulated"),
    ]
    assert rows[0]["accuracy"] == rows[1]["accuracy"] == 1.0 and rows[1]["pairs"] == 2 * 3 * 6
    summary = json.loads(Path(out["summary"]).read_text())
    assert summary["tables"]["agreement"]["rows"] == 2 and summary["reward_agreement"] == rows
    assert summary["annotator_ceiling"] == [
        {"annotator": "sim-careful-1", "pairs": 18, "accuracy": 1.0},
        {"annotator": "sim-careful-2", "pairs": 18, "accuracy": 1.0},
    ]


def test_reasongen_source_batches_prompts_and_stores_the_same_candidates(
    store: Store, tiny_model_dir
) -> None:
    # Study creation samples a chunk of prompts in one generate call per system; a prompt's
    # candidates are the ones the one-prompt source gives, stored in the same (prompt, system) order.
    pytest.importorskip("torch")
    from annotation.populate import reasongen_source
    from reasongen.types import SamplingSettings

    settings = SamplingSettings(guidance=2.0, max_cot_tokens=4, num_image_tokens=16)
    source = reasongen_source(device="cpu", settings=settings)
    one_at_a_time = reasongen_source(device="cpu", settings=settings)
    del one_at_a_time.batch  # the per-prompt path
    systems = [(str(tiny_model_dir), "got-r1"), (str(tiny_model_dir), "direct")]
    stored = []
    for name, src in (("batched", source), ("single", one_at_a_time)):
        st = store.create_study(name, group_size=2, rankings_per_task=1, seed=3)
        store.add_prompts(st.id, ["a red square", "two blue circles above a star", "a star"])
        ids = generate_candidates(store, st.id, systems, src, seed=3)
        stored.append([store.load_sample(i) for i in ids])
    batched, single = stored
    assert len(batched) == len(single) == 3 * 2 * 2
    for a, b in zip(batched, single):
        assert (a.prompt, a.recipe, a.seed, a.index) == (b.prompt, b.recipe, b.seed, b.index)
        assert a.cot_token_ids == b.cot_token_ids and a.image_token_ids == b.image_token_ids

"""reasongen.prompt_files: the one prompt-file reader (.txt, .jsonl, .json)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from reasongen.prompt_files import iter_json_lines, read_prompt_file

META = {"tag": "single_object", "include": [{"class": "circle", "count": 1}]}


def test_text_files_one_prompt_per_line_with_comments(tmp_path: Path) -> None:
    (tmp_path / "p.txt").write_text("# comment\n  a red square  \n\n   # indented\ntwo blue circles\n")
    expected = [{"prompt": "a red square"}, {"prompt": "two blue circles"}]
    assert read_prompt_file(tmp_path / "p.txt") == expected
    (tmp_path / "p.prompts").write_text("any suffix is text\n")
    assert read_prompt_file(tmp_path / "p.prompts") == [{"prompt": "any suffix is text"}]


def test_jsonl_keeps_every_key_and_accepts_bare_strings(tmp_path: Path) -> None:
    rows = [{"prompt": "a cat", "tag": "single_object"}, {"prompt": "a circle", "metadata": META}, "a dog"]
    lines = [json.dumps(rows[0]), json.dumps(rows[1]), "", json.dumps(rows[2])]
    (tmp_path / "p.jsonl").write_text("\n".join(lines))
    assert read_prompt_file(tmp_path / "p.jsonl") == [*rows[:2], {"prompt": "a dog"}]


def test_json_list(tmp_path: Path) -> None:
    (tmp_path / "p.json").write_text(json.dumps(["a cat", {"prompt": "a circle", "metadata": META}]))
    expected = [{"prompt": "a cat"}, {"prompt": "a circle", "metadata": META}]
    assert read_prompt_file(tmp_path / "p.json") == expected


@pytest.mark.parametrize(
    ("name", "text", "message"),
    [
        ("bad.jsonl", '{"prompt": "x"}\n\n{oops\n', r"bad.jsonl:3: not JSON"),
        ("bad.jsonl", '{"prompt": "x"}\n{"text": "y"}\n', r"bad.jsonl:2: needs a 'prompt' string"),
        ("bad.jsonl", '{"prompt": "  "}\n', r"bad.jsonl:1: needs a 'prompt' string"),
        ("bad.json", '{"prompt": "x"}', r"must hold a JSON list of prompts, got a dict"),
        ("bad.json", '["x", 3]', r"bad.json: item 1 needs a 'prompt' string"),
        ("bad.json", "[oops", r"bad.json: not JSON"),
        ("empty.txt", "# only a comment\n\n", r"holds no prompts"),
        ("empty.json", "[]", r"holds no prompts"),
        ("empty.jsonl", "\n", r"holds no prompts"),
    ],
)
def test_errors_name_the_file_and_line(tmp_path: Path, name: str, text: str, message: str) -> None:
    (tmp_path / name).write_text(text)
    with pytest.raises(ValueError, match=message):
        read_prompt_file(tmp_path / name)


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="does not exist"):
        read_prompt_file(tmp_path / "missing.txt")


def test_iter_json_lines_numbers_lines_from_one_skipping_blanks(tmp_path: Path) -> None:
    (tmp_path / "x.jsonl").write_text('1\n\n"two"\n{"k": 3}\n')
    assert list(iter_json_lines(tmp_path / "x.jsonl")) == [(1, 1), (3, "two"), (4, {"k": 3})]


# ------------------------------------------------------------ T2I-R1's data format (issue 20)
# Records as they appear in CaraJ7/T2I-R1 data/geneval_and_t2i_data_final.json (JSON lines).
T2I_ROWS = [
    {"prompt": "a photo of a car below a zebra", "nouns": ["car", "zebra"],
     "spatial_info": {"obj1": "car", "obj2": "zebra", "locality": "below"}, "task_type": "spatial"},
    {"prompt": "a photo of four coasters", "nouns": ["coaster"],
     "numeracy_info": [{"obj_name": "coaster", "num": 4}], "task_type": "numeracy"},
    {"prompt": "a photo of a purple elephant and a blue teddy bear", "nouns": ["elephant", "teddy bear"],
     "attr_nouns": ["purple elephant", "blue teddy bear"], "task_type": "color"},
    {"task_type": "texture", "prompt": "a metallic car and a wooden desk", "nouns": ["car", "desk"],
     "attr_nouns": ["metallic car", "wooden desk"]},
    {"task_type": "complex", "prompt": "The green plant was next to the white nightstand.",
     "nouns": ["plant", "nightstand"],
     "spatial_info": {"obj1": "plant", "obj2": "nightstand", "locality": "next to"}},
]  # fmt: skip


def test_t2i_r1_json_lines_under_a_json_name_are_read_with_their_fields_as_metadata(tmp_path: Path) -> None:
    from reasongen.types import validate_metadata

    path = tmp_path / "geneval_and_t2i_data_final.json"
    path.write_text("\n".join(json.dumps(r) for r in T2I_ROWS) + "\n")
    rows = read_prompt_file(path)
    assert [r["prompt"] for r in rows] == [r["prompt"] for r in T2I_ROWS]
    metas = [r["metadata"] for r in rows]
    for m, raw in zip(metas, T2I_ROWS):
        validate_metadata(m)  # GenEval's shape, so every reward reads it
        assert m["t2i_r1"] == {k: v for k, v in raw.items() if k != "prompt"}  # kept whole
    assert metas[0]["tag"] == "position"
    assert metas[0]["include"] == [{"class": "car", "count": 1, "position": ["below", 1]},
                                   {"class": "zebra", "count": 1}]  # fmt: skip
    assert metas[1]["tag"] == "counting" and metas[1]["include"] == [{"class": "coaster", "count": 4}]
    assert metas[2]["tag"] == "color_attr"
    assert [o.get("color") for o in metas[2]["include"]] == ["purple", "blue"]
    assert metas[3]["tag"] == "two_object" and "color" not in metas[3]["include"][0]
    assert metas[4]["tag"] == "two_object"  # "next to" is no GenEval relation


def test_a_record_with_its_own_metadata_keeps_it_and_bad_t2i_fields_are_named(tmp_path: Path) -> None:
    (tmp_path / "p.jsonl").write_text(json.dumps({"prompt": "a circle", "nouns": ["x"], "metadata": META}))
    assert read_prompt_file(tmp_path / "p.jsonl")[0]["metadata"] == META
    (tmp_path / "bad.jsonl").write_text('{"prompt": "a"}\n{"prompt": "b", "numeracy_info": [{"num": 2}]}\n')
    with pytest.raises(ValueError, match=r"bad.jsonl:2: T2I-R1 field 'numeracy_info'"):
        read_prompt_file(tmp_path / "bad.jsonl")


def test_a_missing_paper_data_file_says_where_it_comes_from(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match=r"does not exist: T2I-R1's training prompts .* CaraJ7/T2I-R1"):
        read_prompt_file(tmp_path / "geneval_and_t2i_data_final.json")


def test_the_t2i_r1_recipe_fails_with_that_message_when_its_file_is_missing(tmp_path, monkeypatch) -> None:
    from reasongen.config import parse_config
    from training.grpo import GRPOConfig, load_prompts

    recipe = Path(__file__).resolve().parents[2] / "training" / "recipes" / "t2i_r1.yaml"
    monkeypatch.chdir(tmp_path)
    cfg = parse_config(GRPOConfig, ["--config", str(recipe)])
    assert Path(cfg.prompts).name == "geneval_and_t2i_data_final.json"
    with pytest.raises(ValueError, match=r"data/geneval_and_t2i_data_final.json in the CaraJ7/T2I-R1"):
        load_prompts(cfg)

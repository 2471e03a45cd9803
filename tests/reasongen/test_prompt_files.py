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

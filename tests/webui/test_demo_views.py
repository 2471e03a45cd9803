"""The demo's readable views: CoT chips, the model card panel, the out-of-language notice."""

from __future__ import annotations

from types import SimpleNamespace

from reasongen.plans import _PALETTE
from webui.model_card import about_markdown, outside_language_notice
from webui.reasoning import cot_html

COT = (
    "Two shapes. <|obj_start|>red circle<|obj_end|><|box_start|>(100,200),(300,400)<|box_end|> "
    "<|obj_start|>blue <b>square<|obj_end|><|box_start|>(500,200),(700,400)<|box_end|>"
)


def test_cot_boxes_become_chips_in_the_plans_colours():
    html = cot_html(COT)
    assert html.count("class='rg-chip'") == 2
    first, second = (f"rgb({r},{g},{b})" for r, g, b in _PALETTE[:2])
    assert html.index(first) < html.index("red circle") < html.index(second) < html.index("blue")
    assert "(500,200),(700,400)" in html
    assert "<|" not in html and "<b>" not in html and "&lt;b&gt;" in html  # tokens dropped, text escaped
    assert html.startswith("<div") and "Two shapes." in html


def test_an_unreadable_box_stays_plain_text():
    html = cot_html("<|obj_start|>dog<|obj_end|><|box_start|>(1,2)<|box_end|>")
    assert "rg-chip" not in html and "dog" in html


def _services(model_id: str, metadata: dict | None):
    ex = SimpleNamespace(category="counting", prompt="a photo of two green stars")
    loaded = SimpleNamespace(model_id=model_id, image_size=64, grid=8)
    return SimpleNamespace(loaded=loaded, examples=[ex], prompt_metadata=lambda p: metadata)


def test_a_prompt_outside_the_shapes_language_gets_a_notice_with_suggestions():
    svc = _services("/models/shapes-janus-r1", None)
    notice = outside_language_notice(svc, "a cat on a sofa")
    assert "outside the shapes language" in notice and "a photo of two green stars" in notice
    assert outside_language_notice(_services("/models/shapes-janus-r1", {"tag": "x"}), "two stars") is None
    assert outside_language_notice(_services("/models/janus-pro-1b", None), "a cat on a sofa") is None


def test_the_about_panel_names_size_vocabulary_recipes_and_scores():
    text = about_markdown(_services("/models/shapes-janus-r1", None), ["shapes"])
    assert "64×64 pixels" in text and "8×8 image tokens" in text
    assert "triangle" in text and "striped" in text and "left of" in text
    assert "`got-r1`" in text and "`direct`" in text
    assert "`shapes`" in text and "`combined`" in text and "n/a" in text

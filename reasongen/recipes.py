"""Recipes: how a prompt is put to the model for each family of released checkpoints.

A recipe says whether the model writes a chain of thought first (step 1), whether that CoT holds
a GoT box plan, and the exact text a checkpoint was trained with. Templates must match the
released checkpoints token for token, so each cites the file it was read from.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .types import Sample

USER, ASSISTANT = "<|User|>", "<|Assistant|>"


def janus_chat(user_text: str, system: str = "", roles: tuple[str, str] = (USER, ASSISTANT)) -> str:
    """DeepSeek's "deepseek" SFT conversation format with the assistant turn left open.

    What ``VLChatProcessor.apply_sft_template_for_multi_turn_prompts`` returns (deepseek-ai/Janus,
    janus/utils/conversation.py): an optional system message and a blank line, ``role: content``,
    a blank line, ``role:``; the whole string stripped. The role strings are whatever the caller
    passed: Janus-Pro and ReasonGen-R1 use ``<|User|>``/``<|Assistant|>``; T2I-R1 and GoT-R1
    pass plain ``User``/``Assistant``.
    """
    head = f"{system}\n\n" if system else ""
    return f"{head}{roles[0]}: {user_text.strip()}\n\n{roles[1]}:".strip()


@dataclass(frozen=True)
class Recipe:
    """A prompt recipe.

    Attributes:
        name: registry name.
        has_cot: the model writes text (step 1) before ``<begin_of_image>``.
        uses_plan: the CoT carries a GoT box plan worth drawing.
        template: ``str.format`` template of the user turn; ``{prompt}`` is the user's prompt.
        source: the file the template was read from.
        system: system message of the step-1 conversation ("" for none).
        roles: the user and assistant role strings.
        image_template: ``None`` when step 2 continues the step-1 sequence (prompt + CoT +
            ``<begin_of_image>``); otherwise the user turn of a new conversation for step 2, with
            ``{prompt}`` and ``{cot}`` (T2I-R1 re-wraps this way).
        strip_final_period: drop trailing full stops of the prompt (no released recipe does).
        remove_phrases: phrases deleted wherever they occur in the prompt before it is formatted
            (ReasonGen-R1 deletes "A photo of"/"a photo of" from GenEval prompts).
        max_cot_tokens: the CoT length cap of the released code (``None``: no released cap).
        cot_cap_source: where ``max_cot_tokens`` was read.
    """

    name: str
    has_cot: bool
    uses_plan: bool
    template: str
    source: str
    description: str = ""
    system: str = ""
    roles: tuple[str, str] = (USER, ASSISTANT)
    image_template: str | None = None
    strip_final_period: bool = False
    remove_phrases: tuple[str, ...] = ()
    max_cot_tokens: int | None = None
    cot_cap_source: str = ""

    def clean_prompt(self, prompt: str) -> str:
        """The prompt as it goes into the templates: ``remove_phrases`` deleted (in order, every
        occurrence), whitespace runs collapsed to one space, ends stripped, and trailing full
        stops dropped only when ``strip_final_period``."""
        for phrase in self.remove_phrases:
            prompt = prompt.replace(phrase, "")
        prompt = " ".join(prompt.split())
        return prompt.rstrip(".") if self.strip_final_period else prompt

    def format_prompt(self, prompt: str) -> str:
        """The step-1 text that follows BOS: system, the user turn, the open assistant turn.

        For ``direct`` this is the whole conditioning text; ``<begin_of_image>`` follows it.
        """
        return janus_chat(self.template.format(prompt=self.clean_prompt(prompt)), self.system, self.roles)

    def image_prompt(self, prompt: str, cot: str) -> str | None:
        """The step-2 text (before ``<begin_of_image>``) when the recipe re-wraps, else None."""
        if self.image_template is None:
            return None
        user = self.image_template.format(prompt=self.clean_prompt(prompt), cot=cot.strip())
        return janus_chat(user, "", self.roles)


# T2I-R1 (CaraJ7/T2I-R1): the reasoning prompt is data/prompt/reasoning_prompt.txt (its "{}" is
# our "{prompt}"; the file has no trailing newline, so the trainer's unstripped read and the
# inference script's stripped one agree). src/t2i-r1/src/open_r1/grpo.py (make_conversation) and
# src/t2i-r1/src/infer/reason_inference.py build the stage-1 conversation with the roles "User" /
# "Assistant" and the system prompt below (trainer/grpo_trainer.py, compute_loss); stage 2 is a
# fresh conversation, again "User"/"Assistant", whose user turn is f"{raw_prompt}. {answer}" and
# whose system prompt is empty. The trainer caps the CoT at --max_completion_length 1024
# (src/scripts/run_grpo.sh; max_textcot_length is left unset); reason_inference.py samples at most
# 512 new tokens.
_T2I_R1 = (
    'You are asked to generate an image based on this prompt: "{prompt}"\n'
    "Provide a brief, precise visualization of all elements in the prompt. Your description should:\n"
    "1. Include every object mentioned in the prompt\n"
    "2. Specify visual attributes (color, number, shape, texture) if specified in the prompt\n"
    "3. Clarify relationships (e.g., spatial) between objects if specified in the prompt\n"
    "4. Be concise (50 words or less)\n"
    "5. Focus only on what's explicitly stated in the prompt\n"
    "6. Do not elaborate beyond the attributes or relationships specified in the prompt\n"
    "Do not miss objects. Output your visualization directly without explanation:"
)
_T2I_R1_SYSTEM = (
    "You are a helpful assistant that receives an image prompt and generate a visualization of the prompt."
)

RECIPES: dict[str, Recipe] = {
    r.name: r
    for r in (
        Recipe(
            "direct",
            has_cot=False,
            uses_plan=False,
            template="{prompt}",
            source="deepseek-ai/Janus README.md (Janus-Pro text-to-image) / generation_inference.py",
            description="No reasoning: the plain Janus-Pro baseline.",
        ),
        Recipe(
            "t2i-r1",
            has_cot=True,
            uses_plan=False,
            template=_T2I_R1,
            system=_T2I_R1_SYSTEM,
            image_template="{prompt}. {cot}",
            roles=("User", "Assistant"),
            max_cot_tokens=1024,
            cot_cap_source="CaraJ7/T2I-R1 src/scripts/run_grpo.sh (--max_completion_length 1024)",
            source="CaraJ7/T2I-R1 src/t2i-r1/src/open_r1/grpo.py, trainer/grpo_trainer.py, "
            "infer/reason_inference.py",
            description="Semantic-level CoT (a short visual description), then the image.",
        ),
        Recipe(
            "got-r1",
            has_cot=True,
            uses_plan=True,
            template="Follow the caption to generate an image through a chain of thought process: {prompt}",
            roles=("User", "Assistant"),
            # infer.py samples CoT tokens `while next_token != <begin_of_image> and i < 600`,
            # then appends <begin_of_image> if the chain did not end with it.
            max_cot_tokens=600,
            cot_cap_source="gogoduan/GoT-R1 infer.py (generate: i < 600)",
            source="gogoduan/GoT-R1 infer.py",
            description="Reasoning chain with a GoT box plan (labelled boxes, 0–1000), then the image.",
        ),
        Recipe(
            "reasongen-r1",
            has_cot=True,
            uses_plan=False,
            # The template is "A photo of {}. Output a richly detailed prompt: " in both
            # examples/janus_rl.sh (TEMPLATE) and benchmark/generate_inference_geneval.py; its
            # trailing space goes when Janus's apply_sft_template strips each message. The
            # GenEval script first deletes "A photo of" and "a photo of" wherever they occur
            # (get_prompt: text.replace(...).strip()) and keeps the prompt's final period; the
            # RL data set (verl/utils/dataset/rl_dataset.py) strips the line only, and its
            # training prompts never contain the phrase. Roles "<|User|>"/"<|Assistant|>", no
            # system prompt.
            template="A photo of {prompt}. Output a richly detailed prompt:",
            remove_phrases=("A photo of", "a photo of"),
            # janus_rl.sh: data.max_response_length=1024 covers CoT and image; text_img_generate
            # (Janus/janus/models/modeling_vlm.py) gives the CoT max_new_tokens - 576 = 448.
            max_cot_tokens=448,
            cot_cap_source="Franklin-Zhang0/ReasonGen-R1 examples/janus_rl.sh "
            "(data.max_response_length=1024) and Janus/janus/models/modeling_vlm.py "
            "(text_img_generate: max_new_tokens - image_token_num_per_image)",
            source="Franklin-Zhang0/ReasonGen-R1 examples/janus_rl.sh, "
            "benchmark/generate_inference_geneval.py",
            description="A richly detailed rationale, then the image in the same sequence.",
        ),
    )
}


def get_recipe(name: str) -> Recipe:
    """The recipe called ``name``; an unknown name raises ``ValueError`` listing the choices."""
    try:
        return RECIPES[name]
    except KeyError:
        raise ValueError(f"unknown recipe {name!r}; choose one of: {', '.join(RECIPES)}") from None


def released_cot_cap(name: str, default: int = 256) -> int:
    """The CoT length cap ``name``'s released code uses, or ``default`` for a recipe without one
    (``direct`` writes no CoT; our own recipes have none)."""
    cap = get_recipe(name).max_cot_tokens
    return default if cap is None else cap


def sample_writes_cot(sample: Sample) -> bool:
    """Whether ``sample``'s recipe writes a CoT (``has_cot``), or, for a recipe not in
    :data:`RECIPES`, whether the sample has CoT text."""
    try:
        return get_recipe(sample.recipe).has_cot
    except ValueError:
        return bool(sample.cot_text)


def sample_uses_plan(sample: Sample) -> bool:
    """Whether ``sample`` should carry a GoT box plan: its recipe's ``uses_plan``, or, for a
    recipe not in :data:`RECIPES`, whether it has a parsed plan with at least one box."""
    try:
        return get_recipe(sample.recipe).uses_plan
    except ValueError:
        return sample.plan is not None and len(sample.plan) > 0

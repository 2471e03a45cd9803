# ruff: noqa: E501  (the card is a Markdown template)
"""Write the model card (README.md) of a pretrained shapes model from its measured numbers.

    python -m training.shapes.card MODEL_DIR --bench got-r1=BENCH_DIR --bench direct=BENCH_DIR \
        [--bench compositional=BENCH_DIR] [--notes NOTES.md]

Reads ``MODEL_DIR/training_stats.json`` (written by ``training.shapes.pretrain``) and each
benchmark's ``report.json`` (``python -m reasongen.eval shapes``); no number is typed in by hand.
``--notes`` is the card's "Limitations" section, written after looking at the results.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
from pathlib import Path
from typing import Any

from reasongen.eval.report import group_by_suite


def _bench_table(reports: dict[str, dict[str, Any]]) -> str:
    """One table per suite: the reports that share their categories side by side."""
    tables = []
    for cats, names in group_by_suite(reports).items():
        head = "| category | " + " | ".join(names) + " |\n|---|" + "---|" * len(names) + "\n"
        rows = []
        for cat in cats:
            cells = " | ".join(f"{reports[n]['categories'][cat]:.3f}" for n in names)
            rows.append(f"| {cat} | {cells} |")
        cells = " | ".join(f"**{reports[n]['overall']:.3f}**" for n in names)
        rows.append(f"| **overall** | {cells} |")
        tables.append(head + "\n".join(rows))
    extra = []
    for n in reports:
        plan = reports[n].get("plan") or {}
        if plan.get("images"):
            extra.append(
                f"- `{n}`: plan faithfulness {plan['faithfulness']:.3f}, plan–image IoU {plan['iou']:.3f}"
            )
    return "\n\n".join(tables) + "\n\n" + "\n".join(extra)


def _scenes_line(cfg: dict[str, Any]) -> str:
    """What the scenes were drawn from: GenEval's six categories, or the whole language."""
    if cfg.get("language") == "full":
        return ("the whole shapes language (`--language full`, `reasongen.shapes.compose.FULL_LANGUAGE`: "
                "GenEval's six templates and the compositional categories — counts with colours and "
                "sizes, two and three counted kinds, three and four attributed objects, relations "
                "between attributed objects)")  # fmt: skip
    return "GenEval's six categories in equal parts"


def _command(config: dict[str, Any], out: str) -> str:
    """The pre-training command of a stats ``config`` (fields a newer trainer added take defaults),
    writing to ``out`` (the card's own folder, not the machine-specific path it was trained in)."""
    from .pretrain import PretrainShapesConfig, command_line

    known = {f.name for f in dataclasses.fields(PretrainShapesConfig)}
    cfg = PretrainShapesConfig(**{**{k: v for k, v in config.items() if k in known}, "out": out})
    return command_line(cfg, show=("out", "seed", "lm_steps", "vq_steps", "max_minutes"), resume=False)


def _resumed(stats: dict[str, Any]) -> str:
    r = stats.get("resumed")
    if not r:
        return ""
    return (f" This model was resumed (LM from step {r['lm_from_step']}, VQ decoder from step "
            f"{r['vq_from_step']}); the wall time below is its last session's.")  # fmt: skip


def card(model_dir: Path, reports: dict[str, dict[str, Any]], notes: str = "") -> str:
    """The model card text."""
    st = json.loads((model_dir / "training_stats.json").read_text())
    cfg, cfgj = st["config"], json.loads((model_dir / "config.json").read_text())
    p, vq, lm = st["parameters"], st["vq"], st["lm"]
    n_prompts = {sum(c["prompts"] for c in r["counts"].values()) for r in reports.values()}
    settings = {json.dumps(r.get("settings", {}), sort_keys=True) for r in reports.values()}
    acc_rec = 100 * (vq["detector_accuracy_recon"] or 0)
    acc_clean = 100 * (vq["detector_accuracy_clean"] or 0)
    size_mb = sum(f.stat().st_size for f in model_dir.iterdir() if f.is_file()) / 2**20
    return f"""# {model_dir.name}: an embedded model, supervised only

A small Janus-format text-to-image model trained from nothing by
`{_command(cfg, f"assets/models/{model_dir.name}")}`
(other settings at their defaults) on the shapes world
(`reasongen/shapes/`). A run longer than one sitting continues where it stopped: each stage saves
a checkpoint every `--save-every` steps into `OUT/checkpoints/`, `--session-minutes` ends a session cleanly,
and the same command with `--resume` goes on (a killed run loses at most `--save-every` steps); with
`--max-minutes 0` the resumed run's weights are bit-identical to an uninterrupted run's.{_resumed(st)} It writes a short description and a GoT box plan, then draws the image, and
loads with `reasongen.loading.load_model` or
`transformers.JanusForConditionalGeneration.from_pretrained`. It is deliberately small (it trains
on a 2-core CPU) and is meant to be improved by GRPO (see the numbers below).

## Architecture ({p["total"] / 1e6:.2f} M parameters, {size_mb:.1f} MB on disk, float32)

- Language model: Llama, hidden {cfgj["text_config"]["hidden_size"]}, {cfgj["text_config"]["num_hidden_layers"]} layers,
  {cfgj["text_config"]["num_attention_heads"]} heads, vocabulary {cfgj["text_config"]["vocab_size"]} ({p["language_model"] / 1e6:.2f} M parameters).
- Tokenizer: byte-level BPE trained offline on the world's text (`reasongen.tokenizer.build_bpe_tokenizer`)
  with Janus's special tokens, GoT's four box tokens, one token per plan coordinate (0, 125, …, 1000)
  and one per cell corner `(x,y)` of the 8 × 8 grid (so a box is `<|box_start|>`, two corner tokens, a comma
  and `<|box_end|>`; off-grid numbers still tokenise digit by digit).
- Image tokens: {cfgj["vision_config"]["num_image_tokens"]} per image (an 8 × 8 grid), {cfg["image_size"]} × {cfg["image_size"]} px.
  The codes are semantic (`reasongen/shapes/codes.py`): one code per background cell and one per
  piece of an object (shape, size, colour, row and column inside the object); the codebook is fixed.
- VQ: transformers' `JanusVQVAE` ({p["vq"] / 1e6:.2f} M parameters, channel multipliers
  {cfgj["vq_config"]["channel_multiplier"]}); only its decoder is trained (the world's codes are exact, so
  `reasongen.shapes.codes.scene_codes` is the encoder; the VQ encoder weights are untrained).
- Vision tower (image understanding) and aligner: minimal and untrained; this model only generates.

## Data and training

- Scenes: cell-aligned scenes of the shapes world (6 shapes, 8 colours, 2 sizes, counts 1–4,
  left/right/above/below; no textures) from {_scenes_line(cfg)}.
- LM: supervised fine-tuning on BOS + recipe prompt + CoT + `<begin_of_image>` + image tokens
  ({cfg["lm_scenes"]} scenes; {lm["steps"]} of the {cfg["lm_steps"]} planned steps of batch {cfg["lm_batch"]} — `--max-minutes` stops a stage
  early and the cosine decay then follows the clock, so a slower machine gives a slightly different model —
  AdamW, peak lr {cfg["lm_lr"]}):
  {round(100 * (1 - cfg["direct_fraction"]))}% in the `got-r1` format (CoT + plan), {round(100 * cfg["direct_fraction"])}% `direct`
  (no CoT); {round(100 * cfg["drop_prompt"])}% of examples have the prompt and CoT replaced by pad (classifier-free guidance).
  CoT tokens go through the LM head, image tokens through the generation head; object starts are
  weighted ×{cfg.get("corner_weight", 1.0)} in the image loss. Each token of a plan box is also asked, through the
  generation head, for the code of its object's top-left piece (weight {cfg.get("anchor_weight", 0.0)}): the image positions
  find where an object starts by attending to box tokens, and without this term those tokens carried the box's
  position and size but not the object's shape and colour (`training/shapes/data.py`, `anchor_targets`).
  Final losses: text {lm["final_text_loss"]:.3f}, image {lm["final_image_loss"]:.3f} nats/token.
- VQ decoder: {vq["steps"]} steps of batch {cfg["vq_batch"]} on dense random cell-aligned scenes (L1 + L2),
  trained in a second process at the same time as the LM.
- VQ quality, {cfg["eval_images"]} held-out scenes decoded from their codes: the detector is right on
  {acc_rec:.1f}% of the decoded images (clean renders: {acc_clean:.1f}%),
  mean absolute pixel error {vq["recon_mae"]:.2f} / 255.
- Wall time of the whole command: **{st["wall_seconds"] / 60:.1f} min** on {st["device"]} (this project's 2-core
  CPU machine, shared with other jobs; one torch thread per process).

## Benchmark (`python -m reasongen.eval shapes`, {", ".join(map(str, sorted(n_prompts)))} prompts, seed 0)

{_bench_table(reports)}

Sampling settings: {", ".join(sorted(settings))}.

## Limitations

{notes.strip() or "- Cell-aligned layouts only; no textures; 64 px images."}
"""


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("model_dir", type=Path)
    ap.add_argument("--bench", action="append", default=[], help="NAME=DIR of a benchmark report")
    ap.add_argument("--notes", type=Path, default=None, help="Markdown for the Limitations section")
    args = ap.parse_args(argv)
    reports = {}
    for item in args.bench:
        name, _, path = item.partition("=")
        reports[name] = json.loads((Path(path) / "report.json").read_text())
    notes = args.notes.read_text() if args.notes else ""
    (args.model_dir / "README.md").write_text(card(args.model_dir, reports, notes))
    return 0


if __name__ == "__main__":
    sys.exit(main())

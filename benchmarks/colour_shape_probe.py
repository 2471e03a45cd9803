"""Every colour x shape as a single-object prompt: which combinations a shapes model cannot draw.

    python benchmarks/colour_shape_probe.py assets/models/shapes-janus-full-r1 [--samples 8] [--size large]
    python benchmarks/colour_shape_probe.py MODEL --lead "an illustration of"  # texts no benchmark holds

For each of the world's 8 colours x 6 shapes, ``--samples`` samples of "<lead> a [<size>]
<colour> <shape>" (``got-r1``, seeds 0..k-1) are judged by the benchmark's GenEval rules; it prints
the count right per combination, the combinations below all-right, and where the plans put the
object (the most common box and its share). With the default lead ("a photo of") these are GenEval
"colors" prompts, many of them in the benchmark: a diagnostic, never a way to choose a model. With
a lead whose texts no benchmark holds ("an illustration of", "a picture showing"; the training
pools use such leads) the same combinations are off the benchmark, so the probe may serve as a
validation check; the script refuses a lead that gives any benchmark text. It found that the
seed-1 run of ``shapes_full.yaml`` drew "a pink diamond" right 0 times in 8 (its SFT parent: 7):
GRPO had moved every single-object plan into the bottom-left cell, where that model draws a
clipped pink diamond; the seed-2 run draws all 48 combinations right. With ``--size large`` it
shows what the benchmark's few "large" prompts hint at: GRPO runs draw large objects worse than
their SFT parent (the training/README has the figures).
"""

from __future__ import annotations

import argparse
import sys
from collections import Counter
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # run as a script from anywhere


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    ap.add_argument("model", help="a shapes model folder (Janus format)")
    ap.add_argument("--samples", type=int, default=8, help="samples per combination")
    ap.add_argument("--threads", type=int, default=1, help="torch CPU threads")
    ap.add_argument(
        "--lead",
        default="a photo of",
        help='words before "a <colour> <shape>" (e.g. "an illustration of"; default GenEval\'s)',
    )
    ap.add_argument("--size", choices=("", "small", "large"), default="",
                    help="a size word before the colour (default none, as most GenEval prompts)")  # fmt: skip
    args = ap.parse_args(argv)
    if args.samples < 1:
        ap.error("--samples must be at least 1")

    import torch

    from reasongen.eval.shapes_bench import BenchPrompt, evaluate_shapes, model_generator
    from reasongen.loading import load_model, settings_for
    from reasongen.shapes.parse import parse_prompt
    from reasongen.shapes.scene import COLORS, SHAPES

    size = f"{args.size} " if args.size else ""
    lead = f"{args.lead.strip()} " if args.lead.strip() else ""
    items, text_of = [], {}
    for colour in COLORS:
        for shape in SHAPES:
            text = f"{lead}a {size}{colour} {shape}"
            text_of[colour, shape] = text
            items.append(BenchPrompt(len(items), "colors", text, parse_prompt(text), None))
    if lead != "a photo of ":
        from reasongen.shapes.pools import benchmark_texts

        suites = ("geneval", "compositional")
        held = benchmark_texts(600, 125, suites) | benchmark_texts(600, None, suites)
        clash = sorted(set(text_of.values()) & held)
        if clash:
            ap.error(f"--lead {args.lead!r} gives benchmark texts (e.g. {clash[0]!r}); choose another")

    torch.set_num_threads(args.threads)
    loaded = load_model(args.model)
    generator = model_generator(loaded, "got-r1", args.samples, 0, settings_for(loaded))
    results = evaluate_shapes(generator, items)
    right = Counter(r.prompt for r in results if r.correct)
    boxes = Counter(tuple((b["x1"], b["y1"], b["x2"], b["y2"]) for b in r.plan or ()) for r in results)

    template = f"{lead}a {size}<colour> <shape>"
    print(f"{args.model}: {sum(right.values())} / {len(results)} right ({args.samples} samples each of "
          f'"{template}")')  # fmt: skip
    print("colour \\ shape " + "".join(f"{s:>9}" for s in SHAPES))
    for colour in COLORS:
        print(f"{colour:<15}" + "".join(f"{right[text_of[colour, s]]:>9}" for s in SHAPES))
    wrong = [(it.prompt, right[it.prompt]) for it in items if right[it.prompt] < args.samples]
    print("below all-right: " + (", ".join(f"{p.removeprefix(lead + 'a ')} {n}" for p, n in wrong) or "none"))
    box, n = boxes.most_common(1)[0]
    print(f"most common plan: {box} in {n / len(results):.0%} of samples; {len(boxes)} distinct plans")
    return 0


if __name__ == "__main__":
    sys.exit(main())

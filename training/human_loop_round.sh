#!/usr/bin/env bash
# A further round of the human-feedback loop (issue 22): the panel ranks the samples of the last
# round's GRPO policy, the reward model learns from every round's rankings, and GRPO starts again
# from the SFT model on it.
#
#   bash training/human_loop_round.sh PREV OUT RANKINGS [POLICY] [extra GRPO flags ...]
#
#   PREV      a finished round: a training/human_loop.sh OUT (annotation.db, data/, prompts.txt,
#             reward_model/, grpo/), or the OUT of an earlier human_loop_round.sh (rounds chain)
#   OUT       this round's folder (created; PREV is only read)
#   RANKINGS  this round's ranking budget (tasks of 4 candidates of POLICY, one ranking each)
#   POLICY    the model whose samples are ranked (default PREV/grpo/final); "" = the default
#
# Why: a reward model learned from the SFT model's samples is wrong where GRPO takes the policy —
# on budget 1000 the policy learned to miscount while the learned score rose. Ranking the policy's
# own samples puts labels where the scorer erred (the iterated online RLHF of Bai et al., 2022,
# and Llama 2's reward-model rounds). The round's figures: the reward model's agreement on the
# same ceiling study as round one (SFT samples, so the rounds compare on one set of pairs), and
# GRPO's benchmark gain under the first round's recipe.
#
# What it does, then hands over to training/human_loop.sh OUT RANKINGS (which resumes, as always):
#   - OUT/annotation.db: a copy of PREV's database (SQLite's backup API, so a consistent copy),
#     OUT/data a copy of PREV's image folder made of hard links (a plain copy across file systems;
#     the database's image paths are relative to it). This round's study, $STUDY (default
#     human-loop-rK, K the round's number: human-loop-r2 after a first round), goes into the
#     copies; PREV is untouched.
#   - OUT/prompts.txt: RANKINGS training prompts of prompt seed PROMPT_SEED (default 13: a first
#     round on the defaults drew 11 and, for its ceiling study, 12), none of the benchmark's and
#     none that any earlier round used, for training or for its ceiling study (PREV's prompts.txt,
#     ceiling_prompts.txt and earlier_prompts.txt; OUT/earlier_prompts.txt gathers them for the
#     next round).
#   - human_loop.sh with CANDIDATES=POLICY (the study's samples), RM_STUDIES=every earlier round's
#     study (PREV/studies.txt, or PREV_STUDY [human-loop] after a first round: the reward model
#     pools all rounds' rankings, each filtered by its own controls), CEILING_STUDY=the first
#     round's ceiling study (PREV/ceiling_study.txt, or PREV_STUDY-ceiling; not re-made:
#     OUT/done/ceiling is set; with none in PREV, CEILING_PROMPTS=0 turns step 5b off),
#     RM_PRETRAIN_STEPS=0 and RM_INIT=PREV/reward_model (the last round's scorer, fine-tuned on the
#     pool) unless set. GRPO starts from the SFT model (MODEL, as in round one), so the rounds
#     differ only in the reward model. Every other human_loop.sh knob passes through. OUT/studies.txt
#     (this round's study first, then the earlier ones) and OUT/ceiling_study.txt record the chain.
#     A PREV without studies.txt whose database holds a training study besides PREV_STUDY (a later
#     round made before rounds wrote these files) is refused unless RM_STUDIES is set.
#
# Smoke test: after the smoke test in human_loop.sh (OUT /tmp/hl),
#   RM_FLAGS="--steps 2 --batch_rankings 4 --n_boot 10" MONITOR_N=4 CONTROLS=2 CONTROL_RATE=0.3 \
#   EVAL_FLAGS="--suites compositional" bash training/human_loop_round.sh /tmp/hl /tmp/hl2 10 "" \
#   --max_steps 1 --group_size 2 --prompts_per_step 2
{
set -euo pipefail

usage() {
  echo "usage: $(sed -n 6p "$0" | sed "s/^# *//")" >&2
  exit 2
}
[ "$#" -ge 3 ] || usage
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
[ -d "$1" ] || { echo "human_loop_round: no first round at $1" >&2; exit 2; }
PREV="$(realpath "$1")"
for need in annotation.db data prompts.txt reward_model/README.md; do
  [ -e "$PREV/$need" ] || { echo "human_loop_round: $PREV has no $need: is it a finished human_loop.sh OUT?" >&2; exit 2; }
done
RANKINGS="$3"
case "$RANKINGS" in '' | *[!0-9]*) echo "human_loop_round: RANKINGS must be a whole number, got '$RANKINGS'" >&2; exit 2 ;; esac
POLICY="${4:-}"
[ -n "$POLICY" ] || POLICY="$PREV/grpo/final"
[ -f "$POLICY/config.json" ] || { echo "human_loop_round: no model at $POLICY (config.json)" >&2; exit 2; }
POLICY="$(realpath "$POLICY")"
OUT="$(realpath -m "$2")"  # made once the arguments are checked
[ "$OUT" != "$PREV" ] || { echo "human_loop_round: OUT must differ from PREV" >&2; exit 2; }
shift $(($# < 4 ? $# : 4))
if [ -z "${PYTHON:-}" ]; then
  if [ -x "$ROOT/.venv/bin/python" ]; then PYTHON="$ROOT/.venv/bin/python"; else PYTHON=python; fi
fi
# the chain so far: the studies PREV's reward model learned from (PREV's own first), its ceiling study
if [ -f "$PREV/studies.txt" ]; then
  mapfile -t earlier < <(grep -v '^[[:space:]]*$' "$PREV/studies.txt")
else
  earlier=("${PREV_STUDY:-human-loop}")  # PREV is a first round
  if [ -z "${RM_STUDIES:-}" ]; then
    # a later round made before rounds recorded their chain would be taken for a first one, its
    # reward model's other studies silently dropped from the pool: refuse, naming them
    mapfile -t others < <("$PYTHON" - "$PREV/annotation.db" "${earlier[0]}" <<'PY'
import sqlite3
import sys

db, first = sys.argv[1:]
try:
    with sqlite3.connect(f"file:{db}?mode=ro", uri=True) as con:
        names = [name for (name,) in con.execute("SELECT name FROM studies ORDER BY id")]
except sqlite3.Error:
    names = []  # not a store yet: the loop's own steps report it
for name in names:
    if name != first and not name.endswith("-ceiling"):
        print(name)
PY
    )
    if [ "${#others[@]}" -gt 0 ]; then
      echo "human_loop_round: $PREV has no studies.txt but its database holds studies besides" \
        "${earlier[0]} (${others[*]}): it looks like a later round made before rounds recorded" \
        "their chain. Set RM_STUDIES to the studies its reward model pooled (and STUDY, and write" \
        "$PREV/earlier_prompts.txt with the earlier rounds' prompts), or PREV_STUDY if it is a" \
        "first round under another name." >&2
      exit 2
    fi
  fi
fi
[ "${#earlier[@]}" -gt 0 ] || { echo "human_loop_round: $PREV/studies.txt names no study" >&2; exit 2; }
if [ -f "$PREV/ceiling_study.txt" ]; then
  CEILING_STUDY="${CEILING_STUDY:-$(head -n 1 "$PREV/ceiling_study.txt")}"
else
  CEILING_STUDY="${CEILING_STUDY:-${PREV_STUDY:-human-loop}-ceiling}"
fi
STUDY="${STUDY:-human-loop-r$((${#earlier[@]} + 1))}"
RM_STUDIES="${RM_STUDIES:-${earlier[*]}}"
PROMPT_SEED="${PROMPT_SEED:-13}"
LANGUAGE="${LANGUAGE:-full}"
say() { echo "[human_loop_round] $*" >&2; }

mkdir -p "$OUT/done" "$OUT/logs"
if [ ! -f "$OUT/annotation.db" ]; then
  say "copying $PREV/annotation.db"
  "$PYTHON" - "$PREV/annotation.db" "$OUT/annotation.db" <<'EOF'
import sqlite3
import sys
from pathlib import Path

src, dst = sys.argv[1:]
part = Path(dst + ".partial")
part.unlink(missing_ok=True)
with sqlite3.connect(f"file:{src}?mode=ro", uri=True) as a, sqlite3.connect(part) as b:
    a.backup(b)
part.replace(dst)
EOF
fi
if [ ! -d "$OUT/data" ]; then
  # hard links: no second copy of the images, and PREV's files are never written through them (the
  # store writes a new file and renames it into place; images are named by their content)
  rm -rf "$OUT/data.partial"
  cp -al "$(realpath "$PREV/data")" "$OUT/data.partial" 2>/dev/null || {
    rm -rf "$OUT/data.partial"
    cp -a "$(realpath "$PREV/data")" "$OUT/data.partial"
  }
  mv "$OUT/data.partial" "$OUT/data"
fi
# the first round's ceiling study is this round's too: human_loop.sh does not remake it
touch "$OUT/done/ceiling"
[ -f "$PREV/done/ceiling" ] || export CEILING_PROMPTS=0  # PREV made none: no agreement to measure

if [ ! -f "$OUT/earlier_prompts.txt" ]; then
  used=("$PREV/prompts.txt")
  for f in ceiling_prompts.txt earlier_prompts.txt; do [ -f "$PREV/$f" ] && used+=("$PREV/$f"); done
  cat "${used[@]}" >"$OUT/earlier_prompts.partial"
  mv "$OUT/earlier_prompts.partial" "$OUT/earlier_prompts.txt"
fi
if [ ! -f "$OUT/prompts.txt" ]; then
  say "prompts: $RANKINGS of seed $PROMPT_SEED, none of the earlier rounds'"
  # (from the repository, which holds the package; the caller's folder stays the current one, so
  # that human_loop.sh reads relative paths in its knobs, RM_ENSEMBLE say, as the caller meant them)
  (cd "$ROOT" && "$PYTHON" -m reasongen.shapes.write_prompts --n "$RANKINGS" --seed "$PROMPT_SEED" \
    --language "$LANGUAGE" --cell 125 --holdout 600 --unique --exclude "$OUT/earlier_prompts.txt" \
    --out "$OUT/prompts.txt" >&2)
fi
# the chain, for the next round (RM_STUDIES is the list human_loop.sh pools with $STUDY)
read -r -a pooled <<<"$RM_STUDIES"
printf '%s\n' "$STUDY" "${pooled[@]}" >"$OUT/studies.txt"
echo "$CEILING_STUDY" >"$OUT/ceiling_study.txt"
say "study $STUDY; reward model pools ${pooled[*]}; ceiling study $CEILING_STUDY"

CANDIDATES="$POLICY" RM_STUDIES="$RM_STUDIES" CEILING_STUDY="$CEILING_STUDY" \
  STUDY="$STUDY" RM_PRETRAIN_STEPS="${RM_PRETRAIN_STEPS:-0}" \
  RM_INIT="${RM_INIT:-$PREV/reward_model}" PROMPT_SEED="$PROMPT_SEED" LANGUAGE="$LANGUAGE" PYTHON="$PYTHON" \
  bash "$ROOT/training/human_loop.sh" "$OUT" "$RANKINGS" "" "" "$@"
exit $?
}

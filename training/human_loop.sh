#!/usr/bin/env bash
# The measured human-feedback loop on the shapes world (issue 22, item 5), for one ranking budget:
#
#   bash training/human_loop.sh OUT RANKINGS [MODEL] [GRPO_CONFIG] [extra GRPO flags ...]
#
#   OUT          folder for everything the loop writes (created; nothing is written elsewhere)
#   RANKINGS     the ranking budget: RANKINGS tasks of 4 candidates, one ranking each
#   MODEL        the SFT model (default assets/models/shapes-janus-full); "" = the default
#   GRPO_CONFIG  the GRPO recipe it starts from (default training/recipes/shapes_full.yaml); "" = default
#   extra flags  passed to `training.grpo` last (they win over the recipe), e.g. `--max_steps 2`
#
# Steps (each skipped when its output exists, so a killed loop re-run with the same arguments
# resumes; GRPO itself resumes from its newest checkpoint with `--resume latest`):
#
#   1. OUT/prompts.txt — RANKINGS distinct training prompts of the shapes language:
#        python -m reasongen.shapes.write_prompts --n RANKINGS --seed $PROMPT_SEED \
#            --language $LANGUAGE --cell 125 --holdout 600 --unique --out OUT/prompts.txt
#      (prompt seed 11 by default, never the benchmark's 0; the texts of the benchmark's first 600
#      prompts of both suites are left out, as in the GRPO pool).
#   2. OUT/annotation.db (SQLite, images under OUT/data) — study $STUDY: 4 candidates per prompt
#      from MODEL (CANDIDATES when set) with recipe $RECIPE, one task per prompt, one ranking
#      wanted per task, every candidate scored by the exact `shapes` reward:
#        python -m annotation --db sqlite:///OUT/annotation.db --data-dir OUT/data study create \
#            --name $STUDY --prompts OUT/prompts.txt --system MODEL:$RECIPE --group-size 4 \
#            --rankings-per-task 1 --layout per_system --reward shapes --seed $SEED \
#            --control-rate $CONTROL_RATE
#      (a study left half-made by a killed run is deleted and made again).
#   3. The simulated panel ranks the study (users flagged simulated), after $CONTROLS control
#      tasks the shapes detector vouches for are added (a correct best among wrong others):
#        python -m annotation --db ... --data-dir OUT/data simulate --study $STUDY \
#            --panel careful:6,noisy:3,spammer:1 --flip 0.15 --seed $SEED --max-rankings RANKINGS \
#            --add-controls $CONTROLS
#      Controls are served at the study's control rate; every ranking, control or not, counts
#      toward the budget. An annotator whose control pass rate falls below the store's 0.75 (a
#      control is passed when its best is ranked first, alone) stops counting: their tasks are
#      served to others again and the reward model leaves their rankings out — the spammer, as a
#      rule (it passes one control in four). CONTROLS=0 turns controls off.
#   3b. The ceiling study $STUDY-ceiling (evaluation only, outside the budget): CEILING_PROMPTS
#      prompts of another prompt seed (PROMPT_SEED + 1), none of them a training prompt, made as in
#      step 2 but ranked CEILING_RANKS times each by the same panel (with CEILING_CONTROLS verified
#      controls), so that annotator-against-annotator agreement — the panel's ceiling — can be
#      measured. The training study has one ranking per task and cannot give it.
#   4. OUT/reward_pretrain — only when RM_PRETRAIN_STEPS > 0 (default 2000): a small CLIP
#      pre-trained on rendered shapes image–caption pairs of the prompts' language (resumable):
#        python -m training.reward_model.pretrain --out OUT/reward_pretrain --language $LANGUAGE \
#            --steps $RM_PRETRAIN_STEPS --seed $SEED --resume $RM_PRETRAIN_FLAGS
#   5. OUT/reward_model — the preference reward model (the `learned` reward) trained on the
#      study's rankings, pooled with RM_STUDIES' (from OUT/reward_pretrain, or from $RM_INIT when
#      RM_PRETRAIN_STEPS is 0):
#        python -m training.reward_model --study $STUDY --db sqlite:///OUT/annotation.db \
#            --data_dir OUT/data --init OUT/reward_pretrain --out OUT/reward_model --seed $SEED \
#            --validation $RM_VALIDATION $RM_FLAGS
#      (RM_VALIDATION of the training prompts choose the step, the start's included: on budget
#      1000 the last step overfitted, held-out accuracy 0.657 against 0.714 at the start)
#   5a. OUT/reward_polished (and OUT/reward_polished_K for the K-th RM_ENSEMBLE folder) — only when
#      RM_POLISH_STEPS > 0 (default 0): the near-miss polish, more contrastive steps on rendered
#      scenes whose near misses are hard negatives, from the reward model (each member of an
#      ensemble), no rankings — it gives back what ranking fine-tuning forgets, as an extra copy
#      of an object (training/README.md, "What fine-tuning on rankings forgets"); steps 5b–7 then
#      score with the polished folders (resumable):
#        python -m training.reward_model.pretrain --init OUT/reward_model --out OUT/reward_polished \
#            --language $LANGUAGE --steps $RM_POLISH_STEPS --lr 1e-4 --warmup_steps 20 \
#            --hard_negatives 1 --relation_mirror 1 --seed $((SEED + 5)) --resume $RM_POLISH_FLAGS
#   5b. OUT/ceiling — the learned reward scores the ceiling study's candidates, and the study is
#      exported with its agreement table (simulated annotators counted, as all of them are):
#        python -m annotation --db ... score --study $STUDY-ceiling --rewards learned \
#            --set learned.model=OUT/reward_model --rescore     (with RM_ENSEMBLE, the ensemble's list)
#        python -m annotation --db ... export --study $STUDY-ceiling --include-simulated --format csv \
#            --out OUT/ceiling
#      OUT/ceiling/agreement.csv holds the panel's ceiling, `learned` and the exact `shapes` reward
#      on the same pairs (pairwise accuracy and Kendall tau-b, 95% CIs clustered by task).
#   6. OUT/grpo.yaml — GRPO_CONFIG with model: MODEL, out_dir: OUT/grpo, rewards: [learned],
#      reward_options: {learned: {model: OUT/reward_model}} (a list with RM_ENSEMBLE), reward_weights: {} and the exact
#      `shapes` reward as over-optimisation monitor (monitor_rewards: [shapes], default options,
#      monitor_every: $MONITOR_EVERY, monitor_n: $MONITOR_N). The file keeps the run's whole
#      config in one place beside its outputs; the recipe's own reward_options (for `shapes`) go,
#      as they name a reward the run no longer optimises. Two settings change for a learned score
#      (LEARNED_ADV_EPS, LEARNED_KL): adv_eps 1.0 — a learned score never ties, so z-scoring each
#      group's small spread turns the scorer's noise into full-size advantages (budget 1000 with
#      the recipe's 1e-4 and no KL: the monitored exact reward fell from 0.895 to 0.767 in 125
#      steps while the learned one stayed flat) — and kl_coef 0.04 to the SFT model;
#      LEARNED_TEXT_KL_SCALE sets text_kl_scale (the CoT tokens' KL weight, × kl_coef), and
#      LEARNED_PTX ptx_coef (the supervised mix on fresh world scenes, training/ptx.py; 0 = off).
#      An existing OUT/grpo.yaml is kept when it names this run's reward and LEARNED_* settings;
#      when it names others (RM_POLISH_STEPS, RM_ENSEMBLE or a LEARNED_* knob changed since it was
#      written) the loop stops (exit 2).
#   7. OUT/grpo — GRPO from MODEL on the learned reward (skipped once OUT/grpo/final exists):
#        python -m training.grpo --config OUT/grpo.yaml --resume latest [extra GRPO flags]
#      with NPROC=N (N > 1) through torchrun (`python -m torch.distributed.run`, the same program):
#        torchrun --standalone --nproc_per_node N -m training.grpo --config OUT/grpo.yaml ...
#   8. OUT/eval — the benchmark and the validation sets of MODEL and of OUT/grpo/final:
#        python -m training.recipe_runs --baseline MODEL --run OUT/grpo --out OUT/eval $EVAL_FLAGS
#      (summary.json and summary.md; each report is cached, so a killed evaluation resumes).
#
# Each step's output is also logged to OUT/logs/<step>.log. Environment knobs (defaults in
# brackets): PYTHON [.venv/bin/python if present, else python], NPROC [1], PROMPT_SEED [11],
# LANGUAGE [full], SEED [0], STUDY [human-loop], RECIPE [got-r1], STUDY_DEVICE [auto] (candidate
# generation), PANEL [careful:6,noisy:3,spammer:1], FLIP [0.15], CONTROLS [20], CONTROL_RATE
# [0.1], CEILING_PROMPTS [100] (0 = no ceiling study), CEILING_RANKS [3], CEILING_CONTROLS [10],
# CANDIDATES [MODEL] (the model whose samples step 2's study ranks: a GRPO policy's, for a second
# round — training/human_loop_round.sh), RM_STUDIES [] (more studies in OUT's database whose
# rankings step 5 pools with $STUDY's), CEILING_STUDY [$STUDY-ceiling] (step 3b's study, or an
# existing one when OUT/done/ceiling is there), UNTIL [8] (the last step to run: 5 stops after
# the reward model and its ceiling agreement, a budget's reward-model figures without its GRPO
# run), RM_PRETRAIN_STEPS [2000],
# RM_PRETRAIN_FLAGS [], RM_INIT [shapes: from scratch], RM_VALIDATION [0.15], RM_FLAGS [],
# RM_POLISH_STEPS [0] (step 5a off), RM_POLISH_FLAGS [],
# LEARNED_ADV_EPS [1.0], LEARNED_KL [0.04], LEARNED_TEXT_KL_SCALE [1.0], LEARNED_PTX [0], MONITOR_EVERY [25], MONITOR_N [60], EVAL_FLAGS [],
# RM_ENSEMBLE [] (other reward-model folders, blank-separated: steps 5b–7 then score with the
# ensemble of OUT/reward_model and these, the mean of their scores — `learned` with a list of
# folders; an existing OUT/ceiling is kept, so delete it when adding members to a finished step 5b).
# The *_FLAGS and RM_ENSEMBLE are split on blanks. With RM_POLISH_STEPS, what steps 5b-7 score with
# is the polished folders (OUT/reward_polished first, then the polished ensemble members).
#
# To extend a finished GRPO run, delete OUT/grpo/final and OUT/eval and re-run with a larger
# --max_steps (it resumes from the newest checkpoint). Smoke test (minutes on a CPU):
#   RM_PRETRAIN_STEPS=2 RM_FLAGS="--steps 2 --batch_rankings 4 --n_boot 10" \
#   MONITOR_N=4 EVAL_FLAGS="--suites compositional" CONTROLS=2 CONTROL_RATE=0.3 \
#   bash training/human_loop.sh /tmp/hl 10 "" "" --max_steps 1 --group_size 2 --prompts_per_step 2
# (CONTROLS must fit the study: each control needs a correct candidate of its own and three of
# other prompts wrong for it, so a 10-prompt study cannot hold the default 20.)
# The whole script is one { ... } block, so bash reads all of it before running any of it: a run
# of hours is not derailed by the file changing under it (a `git pull`, an edit), which a script
# bash reads line by line as it goes would be.
{
set -euo pipefail

usage() {
  echo "usage: $(sed -n 4p "$0" | sed "s/^# *//")" >&2
  exit 2
}
[ "$#" -ge 2 ] || usage
case "$2" in '' | *[!0-9]*) echo "human_loop: RANKINGS must be a whole number, got '$2'" >&2; exit 2 ;; esac
[ "$2" -ge 2 ] || { echo "human_loop: RANKINGS must be >= 2 (the reward model splits by prompt)" >&2; exit 2; }

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
# User paths are read relative to the caller's folder; the defaults relative to the repository.
resolve() { if [ -e "$1" ]; then realpath "$1"; else printf '%s\n' "$1"; fi; }
OUT="$(mkdir -p "$1" && realpath "$1")"
RANKINGS="$2"
MODEL="${3:-}"
GRPO_CONFIG="${4:-}"
shift $(($# < 4 ? $# : 4))
GRPO_EXTRA=("$@")
[ -n "$MODEL" ] && MODEL="$(resolve "$MODEL")"
[ -n "$GRPO_CONFIG" ] && GRPO_CONFIG="$(resolve "$GRPO_CONFIG")"
read -r -a RM_ENSEMBLE <<<"${RM_ENSEMBLE:-}"
for i in "${!RM_ENSEMBLE[@]}"; do
  [ -d "${RM_ENSEMBLE[$i]}" ] || { echo "human_loop: RM_ENSEMBLE: no folder ${RM_ENSEMBLE[$i]}" >&2; exit 2; }
  RM_ENSEMBLE[$i]="$(realpath "${RM_ENSEMBLE[$i]}")"
done
CANDIDATES="${CANDIDATES:-}"
if [ -n "$CANDIDATES" ]; then  # read, like the other user paths, from the caller's folder
  [ -d "$CANDIDATES" ] || { echo "human_loop: CANDIDATES: no model folder $CANDIDATES" >&2; exit 2; }
  CANDIDATES="$(realpath "$CANDIDATES")"
fi
cd "$ROOT"
MODEL="${MODEL:-assets/models/shapes-janus-full}"
GRPO_CONFIG="${GRPO_CONFIG:-training/recipes/shapes_full.yaml}"
[ -f "$GRPO_CONFIG" ] || { echo "human_loop: no GRPO config $GRPO_CONFIG" >&2; exit 2; }

if [ -z "${PYTHON:-}" ]; then
  if [ -x "$ROOT/.venv/bin/python" ]; then PYTHON="$ROOT/.venv/bin/python"; else PYTHON=python; fi
fi
NPROC="${NPROC:-1}"
PROMPT_SEED="${PROMPT_SEED:-11}"
LANGUAGE="${LANGUAGE:-full}"
SEED="${SEED:-0}"
STUDY="${STUDY:-human-loop}"
RECIPE="${RECIPE:-got-r1}"
STUDY_DEVICE="${STUDY_DEVICE:-}"
PANEL="${PANEL:-careful:6,noisy:3,spammer:1}"
FLIP="${FLIP:-0.15}"
CONTROLS="${CONTROLS:-20}"
CONTROL_RATE="${CONTROL_RATE:-0.1}"
case "$CONTROLS" in '' | *[!0-9]*) echo "human_loop: CONTROLS must be a whole number, got '$CONTROLS'" >&2; exit 2 ;; esac
[ "$CONTROLS" -eq 0 ] && CONTROL_RATE=0
CEILING_PROMPTS="${CEILING_PROMPTS:-100}"
CEILING_RANKS="${CEILING_RANKS:-3}"
CEILING_CONTROLS="${CEILING_CONTROLS:-10}"
for knob in CEILING_PROMPTS CEILING_RANKS CEILING_CONTROLS; do
  case "${!knob}" in '' | *[!0-9]*) echo "human_loop: $knob must be a whole number, got '${!knob}'" >&2; exit 2 ;; esac
done
[ "$CEILING_PROMPTS" -eq 0 ] || [ "$CEILING_RANKS" -ge 2 ] || {
  echo "human_loop: CEILING_RANKS must be >= 2 (agreement needs two annotators per task)" >&2
  exit 2
}
UNTIL="${UNTIL:-8}"
case "$UNTIL" in [1-8]) ;; *) echo "human_loop: UNTIL must be a step from 1 to 8, got '$UNTIL'" >&2; exit 2 ;; esac
RM_PRETRAIN_STEPS="${RM_PRETRAIN_STEPS:-2000}"
RM_INIT="${RM_INIT:-shapes}"
RM_VALIDATION="${RM_VALIDATION:-0.15}"
RM_POLISH_STEPS="${RM_POLISH_STEPS:-0}"
case "$RM_POLISH_STEPS" in '' | *[!0-9]*) echo "human_loop: RM_POLISH_STEPS must be a whole number, got '$RM_POLISH_STEPS'" >&2; exit 2 ;; esac
LEARNED_ADV_EPS="${LEARNED_ADV_EPS:-1.0}"
LEARNED_KL="${LEARNED_KL:-0.04}"
LEARNED_TEXT_KL_SCALE="${LEARNED_TEXT_KL_SCALE:-1.0}"
LEARNED_PTX="${LEARNED_PTX:-0}"
for knob in LEARNED_ADV_EPS LEARNED_KL LEARNED_TEXT_KL_SCALE LEARNED_PTX; do
  [[ "${!knob}" =~ ^[0-9]*\.?[0-9]+([eE][-+]?[0-9]+)?$ ]] || {
    echo "human_loop: $knob must be a non-negative number, got '${!knob}'" >&2; exit 2; }
done
MONITOR_EVERY="${MONITOR_EVERY:-25}"
MONITOR_N="${MONITOR_N:-60}"
read -r -a RM_PRETRAIN_FLAGS <<<"${RM_PRETRAIN_FLAGS:-}"
read -r -a RM_FLAGS <<<"${RM_FLAGS:-}"
read -r -a RM_POLISH_FLAGS <<<"${RM_POLISH_FLAGS:-}"
read -r -a EVAL_FLAGS <<<"${EVAL_FLAGS:-}"
read -r -a RM_STUDIES <<<"${RM_STUDIES:-}"
CANDIDATES="${CANDIDATES:-$MODEL}"
# step 5's --study: the training study, then RM_STUDIES (pooled; study names hold no comma)
RM_STUDY="name:$STUDY"
for extra in "${RM_STUDIES[@]}"; do RM_STUDY+=",name:$extra"; done

# what steps 5b-7 score with: the loop's reward model and RM_ENSEMBLE, or (step 5a) their polishes
MEMBERS=("$OUT/reward_model" "${RM_ENSEMBLE[@]}")
SCORERS=("${MEMBERS[@]}")
if [ "$RM_POLISH_STEPS" -gt 0 ]; then
  SCORERS=("$OUT/reward_polished")
  for i in "${!RM_ENSEMBLE[@]}"; do SCORERS+=("$OUT/reward_polished_$((i + 1))"); done
fi
# step 5b's `--set learned.model=` value: one folder, or the JSON list of an ensemble
if [ "${#SCORERS[@]}" -gt 1 ]; then
  LEARNED_MODEL="$("$PYTHON" -c 'import json, sys; print(json.dumps(sys.argv[1:]))' "${SCORERS[@]}")"
else
  LEARNED_MODEL="${SCORERS[0]}"
fi

DB="sqlite:///$OUT/annotation.db"
ANNOTATION=("$PYTHON" -m annotation --db "$DB" --data-dir "$OUT/data")
DONE="$OUT/done"  # markers of the steps whose output is in the database
mkdir -p "$DONE" "$OUT/logs"

say() { echo "[human_loop] $*" >&2; }
# run LOG CMD...: run a step, its output also to OUT/logs/LOG.log
run() {
  local log="$OUT/logs/$1.log"
  shift
  say "\$ $*"
  "$@" 2>&1 | tee -a "$log"
}

# stop_after K: end here when UNTIL is K
stop_after() {
  if [ "$UNTIL" -eq "$1" ]; then
    say "stopped after step $1 (UNTIL=$UNTIL)"
    exit 0
  fi
}

# make_study LOG NAME PROMPTS RANKINGS_PER_TASK SEED SYSTEM: SYSTEM's 4 candidates per prompt, one
# task per prompt, each scored by the exact `shapes` reward (a half-made study of a killed run is remade)
make_study() {
  if "${ANNOTATION[@]}" study list 2>/dev/null | cut -f2 | grep -qxF "$2"; then
    say "deleting the half-made study $2 of a killed run"
    run "$1" "${ANNOTATION[@]}" study delete --study "name:$2" --force
  fi
  local args=(study create --name "$2" --prompts "$3" --system "$6:$RECIPE" --group-size 4
    --rankings-per-task "$4" --layout per_system --reward shapes --seed "$5" --control-rate "$CONTROL_RATE")
  [ -n "$STUDY_DEVICE" ] && args+=(--device "$STUDY_DEVICE")
  run "$1" "${ANNOTATION[@]}" "${args[@]}"
}

# 1. training prompts
if [ -f "$OUT/prompts.txt" ]; then
  say "1/8 prompts: $OUT/prompts.txt exists, skipped"
else
  say "1/8 prompts"
  run prompts "$PYTHON" -m reasongen.shapes.write_prompts --n "$RANKINGS" --seed "$PROMPT_SEED" \
    --language "$LANGUAGE" --cell 125 --holdout 600 --unique --out "$OUT/prompts.txt"
fi

stop_after 1

# 2. the study and its candidates
if [ -f "$DONE/study" ]; then
  say "2/8 study: $STUDY exists, skipped"
else
  say "2/8 study"
  make_study study "$STUDY" "$OUT/prompts.txt" 1 "$SEED" "$CANDIDATES"
  touch "$DONE/study"
fi

stop_after 2

# 3. the simulated panel ranks it
if [ -f "$DONE/simulate" ]; then
  say "3/8 simulate: rankings exist, skipped"
else
  say "3/8 simulate"  # a re-run continues: the panel's users are reused, ranked tasks are not served
  controls=()
  [ "$CONTROLS" -gt 0 ] && controls=(--add-controls "$CONTROLS")
  run simulate "${ANNOTATION[@]}" simulate --study "name:$STUDY" --panel "$PANEL" --flip "$FLIP" \
    --seed "$SEED" --max-rankings "$RANKINGS" "${controls[@]}"
  touch "$DONE/simulate"
fi

# 3b. the ceiling study: the same panel ranks other prompts' candidates several times each
CSTUDY="${CEILING_STUDY:-$STUDY-ceiling}"
if [ "$CEILING_PROMPTS" -eq 0 ]; then
  say "3b/8 ceiling study: off (CEILING_PROMPTS=0)"
elif [ -f "$DONE/ceiling" ]; then
  say "3b/8 ceiling study: $CSTUDY exists, skipped"
else
  say "3b/8 ceiling study"
  if [ ! -f "$OUT/ceiling_prompts.txt" ]; then
    # none of the training prompts' texts (the file is written whole or not at all)
    run ceiling "$PYTHON" -m reasongen.shapes.write_prompts --n "$CEILING_PROMPTS" \
      --seed "$((PROMPT_SEED + 1))" --language "$LANGUAGE" --cell 125 --holdout 600 --unique \
      --exclude "$OUT/prompts.txt" --out "$OUT/ceiling_prompts.txt"
  fi
  make_study ceiling "$CSTUDY" "$OUT/ceiling_prompts.txt" "$CEILING_RANKS" "$((SEED + 1))" "$MODEL"
  controls=()
  [ "$CEILING_CONTROLS" -gt 0 ] && [ "$CONTROLS" -gt 0 ] && controls=(--add-controls "$CEILING_CONTROLS")
  run ceiling "${ANNOTATION[@]}" simulate --study "name:$CSTUDY" --panel "$PANEL" --flip "$FLIP" \
    --seed "$((SEED + 1))" "${controls[@]}"
  touch "$DONE/ceiling"
fi

stop_after 3

# 4. optional contrastive pre-training of the reward model
if [ "$RM_PRETRAIN_STEPS" -gt 0 ]; then
  RM_INIT="$OUT/reward_pretrain"
  if [ -f "$DONE/reward_pretrain" ]; then
    say "4/8 reward pre-training: $RM_INIT exists, skipped"
  elif [ -f "$OUT/reward_model/README.md" ]; then  # a finished reward model needs no starting point
    say "4/8 reward pre-training: $OUT/reward_model exists, skipped"
  else
    say "4/8 reward pre-training"
    run reward_pretrain "$PYTHON" -m training.reward_model.pretrain --out "$RM_INIT" --language "$LANGUAGE" \
      --steps "$RM_PRETRAIN_STEPS" --seed "$SEED" --resume "${RM_PRETRAIN_FLAGS[@]}"
    touch "$DONE/reward_pretrain"
  fi
else
  say "4/8 reward pre-training: off (RM_PRETRAIN_STEPS=0), the reward model starts from $RM_INIT"
fi

stop_after 4

# 5. the preference reward model
if [ -f "$OUT/reward_model/README.md" ]; then  # the card is written last
  say "5/8 reward model: $OUT/reward_model exists, skipped"
else
  say "5/8 reward model"
  run reward_model "$PYTHON" -m training.reward_model --study "$RM_STUDY" --db "$DB" \
    --data_dir "$OUT/data" --init "$RM_INIT" --out "$OUT/reward_model" --seed "$SEED" \
    --validation "$RM_VALIDATION" "${RM_FLAGS[@]}"
fi

# 5a. optional near-miss polish of every scorer
SCORED="$OUT/reward_model/README.md"  # the newest input of step 5b
if [ "$RM_POLISH_STEPS" -eq 0 ]; then
  say "5a/8 near-miss polish: off (RM_POLISH_STEPS=0)"
else
  for i in "${!MEMBERS[@]}"; do
    made="${MEMBERS[$i]}/open_clip_config.json"
    if [ -f "$DONE/polish_$i" ] && [ "$DONE/polish_$i" -nt "$made" ]; then
      say "5a/8 near-miss polish: ${SCORERS[$i]} exists, skipped"
    else
      # a polish of an older reward model (step 5 made again) is not resumed: it starts over
      if [ -e "${SCORERS[$i]}" ] && { [ -f "$DONE/polish_$i" ] || [ "$made" -nt "${SCORERS[$i]}/pretrain.json" ]; }; then
        say "5a/8 ${SCORERS[$i]} polished an older ${MEMBERS[$i]}: polishing again"
        rm -rf "${SCORERS[$i]}" "$DONE/polish_$i"
      fi
      say "5a/8 near-miss polish of ${MEMBERS[$i]}"
      run polish "$PYTHON" -m training.reward_model.pretrain --init "${MEMBERS[$i]}" --out "${SCORERS[$i]}" \
        --language "$LANGUAGE" --steps "$RM_POLISH_STEPS" --lr 1e-4 --warmup_steps 20 --hard_negatives 1 \
        --relation_mirror 1 --seed "$((SEED + 5))" --resume "${RM_POLISH_FLAGS[@]}"
      touch "$DONE/polish_$i"
      polished=1
    fi
  done
  # one marker newer than every polish, whichever were made again
  if [ -n "${polished:-}" ] || [ ! -f "$DONE/polish" ]; then touch "$DONE/polish"; fi
  SCORED="$DONE/polish"
fi

# 5b. the learned reward against the panel's ceiling, on the ceiling study's pairs
if [ "$CEILING_PROMPTS" -eq 0 ]; then
  say "5b/8 ceiling agreement: off (CEILING_PROMPTS=0)"
elif [ -f "$OUT/ceiling/agreement.csv" ] && [ "$OUT/ceiling/agreement.csv" -nt "$SCORED" ]; then
  say "5b/8 ceiling agreement: $OUT/ceiling/agreement.csv exists, skipped"
else
  say "5b/8 ceiling agreement"
  run ceiling_agreement "${ANNOTATION[@]}" score --study "name:$CSTUDY" --rewards learned \
    --set "learned.model=$LEARNED_MODEL" --rescore
  rm -rf "$OUT/ceiling"
  run ceiling_agreement "${ANNOTATION[@]}" export --study "name:$CSTUDY" --include-simulated \
    --format csv --out "$OUT/ceiling"
  cat "$OUT/ceiling/agreement.csv" >&2
fi

stop_after 5

# 6. the GRPO config: the recipe on the learned reward, the exact shapes reward as monitor
if [ -f "$OUT/grpo.yaml" ]; then
  # an existing config must name this run's reward and learned-reward settings: turning
  # RM_POLISH_STEPS on, or changing RM_ENSEMBLE or a LEARNED_* knob, after step 6 would otherwise
  # train (or report) the old run under the new settings. One call prints two lines with the
  # same keys: what the config was written with, and what this run would write.
  pair="$("$PYTHON" - "$OUT/grpo.yaml" "$LEARNED_ADV_EPS" "$LEARNED_KL" "$LEARNED_TEXT_KL_SCALE" \
    "$LEARNED_PTX" "${SCORERS[@]}" <<'PYEOF'
import json, sys
from pathlib import Path

import yaml

path, adv_eps, kl, text_kl_scale, ptx, *folders = sys.argv[1:]
cfg = yaml.safe_load(Path(path).read_text(encoding="utf-8")) or {}
model = ((cfg.get("reward_options") or {}).get("learned") or {}).get("model")
written = {"adv_eps": cfg.get("adv_eps"), "kl_coef": cfg.get("kl_coef"),
           "text_kl_scale": cfg.get("text_kl_scale", 1.0),  # configs from before the options: 1, 0
           "ptx_coef": cfg.get("ptx_coef", 0.0)}
written = {k: float(v) if isinstance(v, (int, float)) and not isinstance(v, bool) else v for k, v in written.items()}
print(json.dumps({"learned": model if isinstance(model, list) else [model], **written}))
wanted = {"adv_eps": float(adv_eps), "kl_coef": float(kl), "text_kl_scale": float(text_kl_scale),
          "ptx_coef": float(ptx)}
print(json.dumps({"learned": folders, **wanted}))
PYEOF
)" || { echo "human_loop: cannot read $OUT/grpo.yaml" >&2; exit 2; }
  named="${pair%%$'\n'*}" want="${pair#*$'\n'}"
  if [ "$named" != "$want" ]; then
    {
      echo "human_loop: $OUT/grpo.yaml was written for $named, but this run's settings are $want"
      echo "  (RM_POLISH_STEPS, RM_ENSEMBLE or a LEARNED_* knob differ from the run that wrote it)."
      echo "  To train with this run's, move $OUT/grpo.yaml aside, and $OUT/grpo and $OUT/eval where"
      echo "  they exist; to go on with the old one, rerun with the settings that wrote it."
    } >&2
    exit 2
  fi
  say "6/8 GRPO config: $OUT/grpo.yaml exists, skipped"
else
  say "6/8 GRPO config"
  "$PYTHON" - "$GRPO_CONFIG" "$OUT/grpo.yaml" "$MODEL" "$OUT" "$MONITOR_EVERY" "$MONITOR_N" \
    "$LEARNED_ADV_EPS" "$LEARNED_KL" "$LEARNED_TEXT_KL_SCALE" "$LEARNED_PTX" "${SCORERS[@]}" <<'EOF'
import sys
from pathlib import Path

import yaml

src, dst, model, out, every, n, adv_eps, kl, text_kl_scale, ptx, *folders = sys.argv[1:]  # folders: the reward model(s)
cfg = yaml.safe_load(Path(src).read_text(encoding="utf-8")) or {}
cfg.update(
    model=model,
    out_dir=f"{out}/grpo",
    rewards=["learned"],
    reward_weights={},
    reward_options={"learned": {"model": folders[0] if len(folders) == 1 else folders}},
    monitor_rewards=["shapes"],
    monitor_options={},
    monitor_every=int(every),
    monitor_n=int(n),
    adv_eps=float(adv_eps),
    kl_coef=float(kl),
    text_kl_scale=float(text_kl_scale),
    ptx_coef=float(ptx),
)
head = f"# {src} for the human-feedback loop (training/human_loop.sh): the learned reward, shapes monitored\n"
Path(dst + ".partial").write_text(head + yaml.safe_dump(cfg, sort_keys=False), encoding="utf-8")
Path(dst + ".partial").replace(dst)
EOF
fi

stop_after 6

# 7. GRPO on the learned reward
if [ -f "$OUT/grpo/final/config.json" ]; then
  say "7/8 GRPO: $OUT/grpo/final exists, skipped"
else
  say "7/8 GRPO"
  if [ "$NPROC" -gt 1 ]; then
    launch=("$PYTHON" -m torch.distributed.run --standalone --nproc_per_node "$NPROC" -m training.grpo)
  else
    launch=("$PYTHON" -m training.grpo)
  fi
  run grpo "${launch[@]}" --config "$OUT/grpo.yaml" --resume latest "${GRPO_EXTRA[@]}"
fi

stop_after 7

# 8. benchmark and validation of the SFT model and the GRPO run
if [ -f "$OUT/eval/summary.json" ]; then
  say "8/8 evaluation: $OUT/eval/summary.json exists, skipped"
else
  say "8/8 evaluation"
  run eval "$PYTHON" -m training.recipe_runs --baseline "$MODEL" --run "$OUT/grpo" --out "$OUT/eval" \
    "${EVAL_FLAGS[@]}"
fi
say "done: $OUT/eval/summary.md"
exit 0
}

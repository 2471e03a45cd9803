"""Researcher command line: ``python -m annotation [--db URL] [--data-dir DIR] COMMAND``.

Commands: ``init``; ``user add|list|deactivate|activate|passwd``;
``study create|list|archive|unarchive|delete``; ``progress``; ``stats``; ``export``; ``score``
(store reward scores of a study's candidates); ``simulate`` (a simulated annotator panel ranks a
study); ``plan`` (rankings needed for an interval width, by simulation; no database). Passwords are
read from an environment variable (``--password-env``) or typed at a prompt, never taken from the
command line. The command line acts as the administrator (the store's ``actor=None``).

``--study REF`` names a study: ``name:REF`` or ``id:REF`` say which; a bare REF is looked up as a
name first and, if no study has that name and REF is all digits, as an id (so a study called
"1" is reachable as ``1`` or ``name:1``, the study with id 1 as ``id:1``).
"""

from __future__ import annotations

import argparse
import getpass
import json
import os
import secrets
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from annotation.db import DEFAULT_DATA_DIR
from annotation.errors import AnnotationError
from reasongen.prompt_files import read_prompt_file


def _password(args: argparse.Namespace) -> str:
    if args.password_env:
        pw = os.environ.get(args.password_env)
        if pw is None:
            raise AnnotationError(f"environment variable {args.password_env} is not set")
        return pw
    if not sys.stdin.isatty():
        return sys.stdin.readline().rstrip("\n")
    first = getpass.getpass(f"password for {args.username}: ")
    if getpass.getpass("again: ") != first:
        raise AnnotationError("the two passwords differ")
    return first


def _store(args: argparse.Namespace) -> Any:
    from annotation.store import Store

    return Store(args.db or os.environ.get("REASONGEN_DB_URL"), args.data_dir)


def masked_url(url: str) -> str:
    """``url`` with its password replaced by ``***`` (safe to print or log)."""
    from sqlalchemy.engine import make_url

    try:
        return make_url(url).render_as_string(hide_password=True)
    except Exception:  # not a URL SQLAlchemy can parse: print nothing of it
        return "<unparsable database URL>"


def cmd_init(args: argparse.Namespace) -> int:
    with _store(args) as st:
        print(f"database ready at {masked_url(st.url)}")
    return 0


def cmd_user(args: argparse.Namespace) -> int:
    if args.action != "list" and not args.username:
        raise AnnotationError(f"user {args.action} needs a USERNAME")
    with _store(args) as st:
        if args.action == "add":
            # A simulated annotator never logs in: it gets a random password nobody knows.
            pw = secrets.token_urlsafe(24) if args.simulated else _password(args)
            u = st.create_user(args.username, pw, role=args.role, simulated=args.simulated)
            print(f"created {'simulated ' if u.simulated else ''}{u.role} {u.username} (id {u.id})")
        elif args.action in ("deactivate", "activate"):
            u = st.set_user_active(args.username, args.action == "activate")
            print(f"{args.action}d {u.username}")
        elif args.action == "passwd":
            st.get_user(args.username)  # a clear error before asking for a password
            u = st.reset_password(args.username, _password(args))
            print(f"new password set for {u.username}")
        else:
            for u in st.list_users():
                state = "active" if u.active else "inactive"
                kind = "\tsimulated" if u.simulated else ""
                print(f"{u.id}\t{u.username}\t{u.role}\t{state}{kind}")
    return 0


def cmd_study(args: argparse.Namespace) -> int:
    from annotation.populate import load_rewards, parse_system, populate_study, reasongen_source

    with _store(args) as st:
        if args.action == "list":
            for s in st.list_studies(include_archived=True):
                state = "\tarchived" if s.archived else ""
                print(f"{s.id}\t{s.name}\tgroup {s.group_size}\twanted {s.rankings_per_task}{state}")
            return 0
        if args.action in ("archive", "unarchive", "delete"):
            if not args.study:
                raise AnnotationError(f"study {args.action} needs --study NAME (or id:N)")
            sid = st.find_study(args.study).id
            if args.action == "delete":
                counts = st.delete_study(sid, force=args.force)
                print("deleted " + ", ".join(f"{n} {what}" for what, n in counts.items()))
            else:
                info = st.archive_study(sid, args.action == "archive")
                print(f"study {info.name} {'archived' if info.archived else 'open'}")
            return 0
        if not args.name or not args.prompts or not args.system:
            raise AnnotationError("study create needs --name, --prompts and at least one --system")
        systems = [parse_system(x) for x in args.system]
        prompts = read_prompt_file(args.prompts)
        guidelines = Path(args.guidelines).read_text(encoding="utf-8") if args.guidelines else ""
        rewards = load_rewards(args.reward or [])
        if rewards:
            prompts, unread = with_shapes_metadata(prompts)
            if unread:
                print(
                    f"warning: {unread} of {len(prompts)} prompts have no metadata and are not "
                    "shapes-world prompts the parser can read; metadata-driven rewards (shapes) "
                    "will store no score for them",
                    file=sys.stderr,
                )
        study = st.create_study(
            args.name,
            group_size=args.group_size,
            rankings_per_task=args.rankings_per_task,
            control_rate=args.control_rate,
            guidelines=guidelines,
            seed=args.seed,
        )
        try:
            st.add_prompts(study.id, prompts)
            populate_study(
                st,
                study.id,
                systems,
                reasongen_source(args.device),
                n=args.samples,
                seed=args.seed,
                rewards=rewards,
                progress=print,
            )
            tasks = st.build_tasks(study.id, layout=args.layout)
            controls = st.add_control_tasks(study.id, args.controls, seed=args.seed) if args.controls else []
        except BaseException:
            # Generation takes many transactions; a failure removes the half-made study (and its
            # images) so its name is free to try again.
            st.delete_study(study.id, force=True)
            print(f"study {study.name} was not created; nothing of it was kept", file=sys.stderr)
            raise
        print(
            f"study {study.name} (id {study.id}): {len(prompts)} prompts, {len(tasks)} tasks, "
            f"{len(controls)} control tasks"
        )
    return 0


def cmd_progress(args: argparse.Namespace) -> int:
    from annotation.workflow import progress

    with _store(args) as st:
        print(json.dumps(progress(st, st.find_study(args.study).id), indent=2))
    return 0


def cmd_stats(args: argparse.Namespace) -> int:
    import pandas as pd

    from annotation.stats import study_summary
    from annotation.tables import rankings_frame, reward_scores_frame, select_annotators, simulated_annotators

    with _store(args) as st:
        sid = st.find_study(args.study).id
        everyone = rankings_frame(st, sid)
        scores = reward_scores_frame(st, sid)
        df = select_annotators(everyone, args.include_simulated)
        keys = shapes_keys(st, df) if args.by_shapes_basis else None
    simulated = simulated_annotators(everyone)
    if simulated:
        used = "included" if args.include_simulated else "left out (--include-simulated counts them)"
        print(f"simulated annotators, {used}: {', '.join(simulated)}")
    if df.empty:
        print("no rankings yet")
        return 0
    res = study_summary(df, n_boot=args.n_boot, seed=args.seed, min_pass_rate=args.min_pass_rate)
    with pd.option_context("display.width", 160, "display.max_columns", 20):
        for key in ("ratings", "win_rates", "recipes", "agreement", "controls"):
            print(f"\n== {key}\n{res[key]}")
    print(f"\nKrippendorff alpha (ordinal): {res['alpha_ordinal']:.3f}")
    print(f"excluded annotators: {res['excluded'] or 'none'}")
    print_agreement(df, res["excluded"], scores, n_boot=args.n_boot, seed=args.seed)
    if keys is not None:
        print_basis_split(df[~df["annotator"].isin(res["excluded"])], scores, keys)
    return 0


SHAPES_BASES = ("correctness", "plan", "iou")
"""The components of the shapes world's careful order (``annotation.simulate.ShapesJudge``)."""


def shapes_keys(store: Any, rankings: Any) -> dict[int, tuple[float, ...]]:
    """Each ranked candidate's (correct, plan-faithful, IoU) for its task's prompt, judged by the
    shapes detector; candidates of prompts the shapes parser cannot read are left out."""
    from annotation.agreement import regular_rankings
    from annotation.errors import AnnotationError
    from annotation.simulate import ShapesJudge

    judge = ShapesJudge(store)
    keys: dict[int, tuple[float, ...]] = {}
    ranked = regular_rankings(rankings)
    for cid, tid in ranked[["candidate_id", "task_id"]].drop_duplicates().itertuples(index=False):
        try:
            keys[int(cid)] = judge.key(int(cid), int(tid))
        except AnnotationError:
            continue
    return keys


def print_basis_split(rankings: Any, scores: Any, keys: dict[int, tuple[float, ...]]) -> None:
    """Agreement split by what separates each pair in the shapes world (``--by-shapes-basis``)."""
    import pandas as pd

    from annotation.agreement import agreement_by_basis

    print("\n== reward agreement by what separates the pair (shapes detector: correct, then plan, then IoU)")
    if scores.empty or not keys:
        print("nothing to split: no reward scores or no shapes-world candidates")
        return
    table = agreement_by_basis(rankings, scores, keys, SHAPES_BASES)
    with pd.option_context("display.width", 200, "display.max_columns", 20):
        print(table.round(3).to_string(index=False))


def print_agreement(rankings: Any, excluded: list[str], scores: Any, *, n_boot: int, seed: int) -> None:
    """The reward–human agreement table of the counted annotators' rankings (or why there is none)."""
    import pandas as pd

    from annotation.agreement import annotator_ceiling, reward_agreement

    kept = rankings[~rankings["annotator"].isin(excluded)]
    per = annotator_ceiling(kept)
    if not per.empty:
        print(
            "\n== each annotator against the others (pairwise accuracy of the others on their strict pairs)"
        )
        print(per.round(3).to_string(index=False))
    if scores.empty:
        hint = "python -m annotation score --study S --rewards shapes,..."
        print(f"\n== reward agreement\nno reward scores stored: {hint}")
        return
    table = reward_agreement(kept, scores, n_boot=n_boot, seed=seed)
    with pd.option_context("display.width", 200, "display.max_columns", 20):
        print(f"\n== reward agreement (95% CIs clustered by task; rankings of {table['annotators'].iloc[0]})")
        print(table.drop(columns=["annotators"]).round(3).to_string(index=False))


def cmd_score(args: argparse.Namespace) -> int:
    from annotation.scoring import build_rewards, score_study
    from reasongen.rewards.base import RewardModelUnavailable
    from reasongen.rewards.cli import _parse_sets

    rewards = build_rewards(args.rewards, _parse_sets(args.set or []))
    with _store(args) as st:
        sid = st.find_study(args.study).id
        try:
            done = score_study(
                st, sid, rewards, rescore=args.rescore, batch_size=args.batch_size, progress=print
            )
        except RewardModelUnavailable as exc:
            raise AnnotationError(str(exc).splitlines()[0]) from None
    for name, n in done.items():
        print(
            f"{name}: scored {n} candidate(s)"
            + ("" if n or args.rescore else " (all had scores; --rescore redoes them)")
        )
    return 0


def cmd_simulate(args: argparse.Namespace) -> int:
    from annotation.simulate import check_options, ensure_verified_controls, parse_panel, simulate_panel

    panel = parse_panel(args.panel)
    check_options(args.flip, args.max_rankings)  # before anything is written
    with _store(args) as st:
        study = st.find_study(args.study)
        sid = study.id
        if args.add_controls:
            made = ensure_verified_controls(st, sid, args.add_controls, seed=args.seed)
            print(f"added {len(made)} verified control task(s); the study has {args.add_controls} or more")
            if study.control_rate == 0:
                print("warning: the study's control rate is 0, so no control task is served", file=sys.stderr)
        run = simulate_panel(
            st, sid, panel, flip=args.flip, seed=args.seed, prefix=args.prefix, max_rankings=args.max_rankings
        )
    for name, profile in run.annotators.items():
        print(f"{name}\t{profile}\tsimulated\t{run.rankings[name]} ranking(s)")
    rate = f"; noisy swaps {run.swaps}/{run.swap_chances}" if run.swap_chances else ""
    print(f"{run.total} ranking(s) submitted by {len(run.annotators)} simulated annotators{rate}")
    return 0


def cmd_export(args: argparse.Namespace) -> int:
    from annotation.export import export_study

    with _store(args) as st:
        paths = export_study(
            st,
            st.find_study(args.study).id,
            args.out,
            args.format,
            n_boot=args.n_boot,
            seed=args.seed,
            min_pass_rate=args.min_pass_rate,
            include_simulated=args.include_simulated,
        )
    for name, path in paths.items():
        print(f"{name}: {path}")
    return 0


def cmd_plan(args: argparse.Namespace) -> int:
    from annotation.planning import PlanConfig, plan_rankings

    cfg = PlanConfig(
        effect=args.effect, width=args.width, group_size=args.group_size, reps=args.reps,
        n_boot=args.n_boot, seed=args.seed, max_rankings=args.max_rankings,
    )  # fmt: skip
    res = plan_rankings(cfg)
    print("SIMULATED study plan (Thurstone-normal candidates, one ranking per task)")
    print(res.tried.round(4).to_string(index=False))
    print(
        f"about {res.rankings} rankings of {cfg.group_size} candidates give a 95% interval of median "
        f"width {res.width:.3f} (<= {cfg.width}) on a win rate of {cfg.effect} "
        f"(coverage in simulation {res.coverage:.0%})"
    )
    return 0


def with_shapes_metadata(prompts: list[str | dict[str, Any]]) -> tuple[list[str | dict[str, Any]], int]:
    """Prompts without metadata get the shapes parser's reading of their text
    (``reasongen.shapes.parse.parse_prompt``); returns the prompts and how many stay unread."""
    from reasongen.shapes.parse import parse_prompt

    out: list[str | dict[str, Any]] = []
    unread = 0
    for p in prompts:
        text = p if isinstance(p, str) else p.get("prompt") if isinstance(p, dict) else None
        has_meta = isinstance(p, dict) and (p.get("metadata") or set(p) - {"prompt", "metadata"})
        if has_meta or not isinstance(text, str):
            out.append(p)
            continue
        meta = parse_prompt(text)
        unread += meta is None
        out.append(p if meta is None else {"prompt": text, "metadata": meta})
    return out, unread


def add_learning_commands(sub: Any) -> None:
    """The ``score``, ``simulate`` and ``plan`` subcommands (learning from people, issue 22)."""
    sc = sub.add_parser("score", help="score a study's candidates with rewards and store the scores")
    sc.add_argument("--study", required=True, help="name or id (name:X, id:N)")
    sc.add_argument("--rewards", required=True, help="comma-separated registry names, e.g. shapes,hps")
    sc.add_argument("--set", action="append", help="REWARD.OPTION=VALUE, e.g. hps.model=/path/HPS_v2.1.pt")
    sc.add_argument("--rescore", action="store_true", help="score again candidates that already have a score")
    sc.add_argument("--batch-size", type=int, default=16, help="candidates per reward call")
    sc.set_defaults(fn=cmd_score)

    sm = sub.add_parser("simulate", help="let a simulated annotator panel rank a study (shapes world)")
    sm.add_argument("--study", required=True, help="name or id (name:X, id:N)")
    sm.add_argument("--panel", required=True, help="PROFILE:COUNT,... of careful, noisy, position, spammer")
    sm.add_argument("--flip", type=float, default=0.15, help="noisy: chance of swapping each adjacent pair")
    sm.add_argument("--seed", type=int, default=0, help="the panel's decisions are fixed by this seed")
    sm.add_argument("--prefix", default="sim", help="usernames are PREFIX-PROFILE-N (reused if simulated)")
    sm.add_argument("--max-rankings", type=int, default=None, help="stop after this many rankings (a budget)")
    sm.add_argument(
        "--add-controls",
        type=int,
        default=0,
        help="first add control tasks the shapes detector vouches for (a correct best among wrong others) "
        "until the study has N control tasks (a re-run adds none)",
    )
    sm.set_defaults(fn=cmd_simulate)

    pl = sub.add_parser("plan", help="rankings needed for a CI width on a win rate (by simulation)")
    pl.add_argument("--effect", type=float, default=0.6, help="true win rate of system A over B")
    pl.add_argument("--width", type=float, default=0.1, help="wanted width of the 95%% interval")
    pl.add_argument("--group-size", type=int, default=4, help="candidates per task")
    pl.add_argument("--reps", type=int, default=20, help="simulated studies per number of rankings")
    pl.add_argument("--n-boot", type=int, default=300, help="bootstrap resamples per interval")
    pl.add_argument("--seed", type=int, default=0)
    pl.add_argument("--max-rankings", type=int, default=100_000, help="give up above this many")
    pl.set_defaults(fn=cmd_plan)


def build_parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(prog="python -m annotation", description=__doc__.splitlines()[0])
    ap.add_argument(
        "--db", help="SQLAlchemy URL (default: $REASONGEN_DB_URL or sqlite:///DATA_DIR/reasongen.db)"
    )
    ap.add_argument("--data-dir", default=str(DEFAULT_DATA_DIR), help="images and default DB")
    sub = ap.add_subparsers(dest="command", required=True)
    sub.add_parser("init", help="create or migrate the database").set_defaults(fn=cmd_init)

    u = sub.add_parser("user", help="manage users")
    u.add_argument("action", choices=["add", "list", "deactivate", "activate", "passwd"])
    u.add_argument("username", nargs="?")
    u.add_argument("--role", choices=["annotator", "researcher"], default="annotator")
    u.add_argument("--password-env", help="read the password from this environment variable")
    u.add_argument(
        "--simulated",
        action="store_true",
        help="add: a software annotator (simulated panel); labelled everywhere, cannot log in",
    )
    u.set_defaults(fn=cmd_user)

    s = sub.add_parser("study", help="create, list, archive or delete studies")
    s.add_argument("action", choices=["create", "list", "archive", "unarchive", "delete"])
    s.add_argument("--study", help="archive/unarchive/delete: name or id (name:X, id:N)")
    s.add_argument("--force", action="store_true", help="delete: also a study that has rankings")
    s.add_argument("--name")
    s.add_argument("--prompts", help=".txt (one per line), .jsonl or .json prompt file")
    s.add_argument("--system", action="append", help="MODEL:RECIPE, repeatable")
    s.add_argument("--group-size", type=int, default=4, help="candidates per task")
    s.add_argument(
        "--samples", type=int, default=None, help="samples per prompt and system (default: group size)"
    )
    s.add_argument("--rankings-per-task", type=int, default=3)
    s.add_argument("--control-rate", type=float, default=0.0)
    s.add_argument("--controls", type=int, default=0, help="number of control tasks to make")
    s.add_argument("--layout", choices=["mixed", "per_system"], default="mixed")
    s.add_argument("--guidelines", help="text file shown to annotators")
    s.add_argument("--reward", action="append", help="reward name to score candidates with")
    s.add_argument("--seed", type=int, default=0)
    s.add_argument("--device", default=None)
    s.set_defaults(fn=cmd_study)

    p = sub.add_parser("progress", help="show a study's progress")
    p.add_argument("--study", required=True, help="name or id (name:X, id:N)")
    p.set_defaults(fn=cmd_progress)

    for name, fn in (("stats", cmd_stats), ("export", cmd_export)):
        x = sub.add_parser(name, help=f"{name} of a study")
        x.add_argument("--study", required=True, help="name or id (name:X, id:N)")
        x.add_argument("--n-boot", type=int, default=1000)
        x.add_argument("--seed", type=int, default=0)
        x.add_argument("--min-pass-rate", type=float, default=0.75)
        x.add_argument(
            "--include-simulated",
            action="store_true",
            help="count simulated annotators' rankings in the statistics (left out by default)",
        )
        if name == "stats":
            x.add_argument(
                "--by-shapes-basis",
                action="store_true",
                help="split each reward's agreement by what separates a pair in the shapes world "
                "(correctness, plan faithfulness, plan–image IoU; judged by the shapes detector)",
            )
        if name == "export":
            x.add_argument("--format", choices=["csv", "parquet", "jsonl"], default="parquet")
            x.add_argument("--out", required=True)
        x.set_defaults(fn=fn)

    add_learning_commands(sub)
    return ap


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return int(args.fn(args))
    except (AnnotationError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2

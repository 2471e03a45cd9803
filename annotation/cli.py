"""Researcher command line: ``python -m annotation [--db URL] [--data-dir DIR] COMMAND``.

Commands: ``init``; ``user add|list|deactivate``; ``study create|list``; ``progress``; ``stats``;
``export``. Passwords are read from an environment variable (``--password-env``) or typed at a
prompt, never taken from the command line.
"""

from __future__ import annotations

import argparse
import getpass
import json
import os
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


def cmd_init(args: argparse.Namespace) -> int:
    with _store(args) as st:
        print(f"database ready at {st.url}")
    return 0


def cmd_user(args: argparse.Namespace) -> int:
    with _store(args) as st:
        if args.action == "add":
            u = st.create_user(args.username, _password(args), role=args.role)
            print(f"created {u.role} {u.username} (id {u.id})")
        elif args.action == "deactivate":
            u = st.set_user_active(args.username, False)
            print(f"deactivated {u.username}")
        else:
            for u in st.list_users():
                print(f"{u.id}\t{u.username}\t{u.role}\t{'active' if u.active else 'inactive'}")
    return 0


def cmd_study(args: argparse.Namespace) -> int:
    from annotation.populate import load_rewards, parse_system, populate_study, reasongen_source

    with _store(args) as st:
        if args.action == "list":
            for s in st.list_studies():
                print(f"{s.id}\t{s.name}\tgroup {s.group_size}\twanted {s.rankings_per_task}")
            return 0
        if not args.name or not args.prompts or not args.system:
            raise AnnotationError("study create needs --name, --prompts and at least one --system")
        systems = [parse_system(x) for x in args.system]
        prompts = read_prompt_file(args.prompts)
        guidelines = Path(args.guidelines).read_text(encoding="utf-8") if args.guidelines else ""
        rewards = load_rewards(args.reward or [])
        study = st.create_study(
            args.name,
            group_size=args.group_size,
            rankings_per_task=args.rankings_per_task,
            control_rate=args.control_rate,
            guidelines=guidelines,
            seed=args.seed,
        )
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
        print(
            f"study {study.name} (id {study.id}): {len(prompts)} prompts, {len(tasks)} tasks, "
            f"{len(controls)} control tasks"
        )
    return 0


def cmd_progress(args: argparse.Namespace) -> int:
    from annotation.workflow import progress

    with _store(args) as st:
        print(json.dumps(progress(st, _study_ref(args.study)), indent=2))
    return 0


def cmd_stats(args: argparse.Namespace) -> int:
    import pandas as pd

    from annotation.stats import study_summary
    from annotation.tables import rankings_frame

    with _store(args) as st:
        df = rankings_frame(st, _study_ref(args.study))
    if df.empty:
        print("no rankings yet")
        return 0
    res = study_summary(df, n_boot=args.n_boot, seed=args.seed, min_pass_rate=args.min_pass_rate)
    with pd.option_context("display.width", 160, "display.max_columns", 20):
        for key in ("ratings", "win_rates", "recipes", "agreement", "controls"):
            print(f"\n== {key}\n{res[key]}")
    print(f"\nKrippendorff alpha (ordinal): {res['alpha_ordinal']:.3f}")
    print(f"excluded annotators: {res['excluded'] or 'none'}")
    return 0


def cmd_export(args: argparse.Namespace) -> int:
    from annotation.export import export_study

    with _store(args) as st:
        paths = export_study(
            st, _study_ref(args.study), args.out, args.format, n_boot=args.n_boot, seed=args.seed
        )
    for name, path in paths.items():
        print(f"{name}: {path}")
    return 0


def _study_ref(text: str) -> int | str:
    return int(text) if text.isdigit() else text


def build_parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(prog="python -m annotation", description=__doc__.splitlines()[0])
    ap.add_argument(
        "--db", help="SQLAlchemy URL (default: $REASONGEN_DB_URL or sqlite:///DATA_DIR/reasongen.db)"
    )
    ap.add_argument("--data-dir", default=str(DEFAULT_DATA_DIR), help="images and default DB")
    sub = ap.add_subparsers(dest="command", required=True)
    sub.add_parser("init", help="create or migrate the database").set_defaults(fn=cmd_init)

    u = sub.add_parser("user", help="manage users")
    u.add_argument("action", choices=["add", "list", "deactivate"])
    u.add_argument("username", nargs="?")
    u.add_argument("--role", choices=["annotator", "researcher"], default="annotator")
    u.add_argument("--password-env", help="read the password from this environment variable")
    u.set_defaults(fn=cmd_user)

    s = sub.add_parser("study", help="create or list studies")
    s.add_argument("action", choices=["create", "list"])
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
    p.add_argument("--study", required=True, help="name or id")
    p.set_defaults(fn=cmd_progress)

    for name, fn in (("stats", cmd_stats), ("export", cmd_export)):
        x = sub.add_parser(name, help=f"{name} of a study")
        x.add_argument("--study", required=True, help="name or id")
        x.add_argument("--n-boot", type=int, default=1000)
        x.add_argument("--seed", type=int, default=0)
        x.add_argument("--min-pass-rate", type=float, default=0.75)
        if name == "export":
            x.add_argument("--format", choices=["csv", "parquet", "jsonl"], default="parquet")
            x.add_argument("--out", required=True)
        x.set_defaults(fn=fn)
    return ap


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return int(args.fn(args))
    except (AnnotationError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2

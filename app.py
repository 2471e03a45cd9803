"""ReasonGen app: ``python app.py`` serves the embedded model and ``data/reasongen.db`` on
http://127.0.0.1:7860 (Generate, Annotate and Results tabs; see ``webui``).

Every flag has an environment variable (``--model`` / ``REASONGEN_MODEL`` ...; ``--db`` also reads
``REASONGEN_DB_URL``, as ``python -m annotation`` does); flags win.
Annotator and researcher accounts: ``python -m annotation user add NAME --role researcher``.
"""

from __future__ import annotations

import os

# Before anything imports gradio or huggingface_hub: no telemetry, no hub lookups.
os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
os.environ.setdefault("HF_HUB_OFFLINE", "1")

import argparse
import logging
import sys
from dataclasses import fields

FLAGS = ("model", "recipe", "db", "data_dir", "rewards", "combine", "device", "host", "port",
         "max_prompt_chars", "max_candidates", "max_cot_tokens", "concurrency", "rate_limit")  # fmt: skip


def build_parser() -> argparse.ArgumentParser:
    """Flags for every ``AppConfig`` field in ``FLAGS``, defaulting to ``REASONGEN_<FIELD>``."""
    from webui.services import AppConfig

    parser = argparse.ArgumentParser(prog="python app.py", description=__doc__.splitlines()[0])
    defaults = AppConfig()
    for f in fields(AppConfig):
        if f.name not in FLAGS:
            continue
        env = f"REASONGEN_{f.name.upper()}"
        default = getattr(defaults, f.name)
        kind = type(default) if isinstance(default, (int, float)) and not isinstance(default, bool) else str
        value = os.environ.get(env)
        if f.name == "db" and value is None:  # the annotation CLI's name for the same database
            value = os.environ.get("REASONGEN_DB_URL")
        if f.name == "rewards":
            default = ",".join(default)
        parser.add_argument(
            f"--{f.name.replace('_', '-')}",
            type=kind,
            default=kind(value) if value is not None else default,
            help=f"{f.metadata.get('help', '')} [env {env}; default {default!r}]",
        )
    return parser


def config_from_args(argv: list[str] | None = None):
    """Parse flags (and environment variables) into an ``AppConfig``."""
    from webui.services import AppConfig

    args = build_parser().parse_args(argv)
    values = {name: getattr(args, name) for name in FLAGS}
    values["secret"] = os.environ.get("REASONGEN_SECRET")
    return AppConfig(**values)


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    for noisy in ("httpx", "alembic"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    from reasongen.loading import ModelLoadError
    from webui import Services, build_demo, launch

    try:
        config = config_from_args(argv)
        services = Services.build(config)
    except (ValueError, ModelLoadError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    print(f"model {services.loaded.model_id}; database {services.store.url}; "
          f"rewards {', '.join(services.rewards) or 'none'}")  # fmt: skip
    try:
        launch(build_demo(services), config.host, config.port)
    except OSError as err:  # e.g. the port is taken
        print(f"error: cannot serve on {config.host}:{config.port}: {err} (try --port)", file=sys.stderr)
        return 2
    finally:
        services.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""ReasonGen app: ``python app.py`` serves the embedded model and ``data/reasongen.db`` on
http://127.0.0.1:7860 (Generate, Annotate and Results tabs; see ``webui``).

Every ``AppConfig`` field is a flag with an environment variable (``--model`` / ``REASONGEN_MODEL``,
``--rate-window-s`` / ``REASONGEN_RATE_WINDOW_S`` ...; ``--db`` also reads ``REASONGEN_DB_URL``, as
``python -m annotation`` does), and ``--config FILE.yaml`` may hold any of them; flags win over the
environment, which wins over the file.
Annotator and researcher accounts: ``python -m annotation user add NAME --role researcher``.
"""

from __future__ import annotations

import os

# Before anything imports gradio or huggingface_hub: no telemetry, no hub lookups.
os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
os.environ.setdefault("HF_HUB_OFFLINE", "1")

import logging
import sys

ENV_PREFIX = "REASONGEN_"
ENV_ALIASES = {"db": ("REASONGEN_DB_URL",)}
"""Besides ``REASONGEN_<FIELD>``: the annotation CLI's name for the same database."""


def config_from_args(argv: list[str] | None = None):
    """Parse flags, environment variables and ``--config FILE.yaml`` into an ``AppConfig``."""
    from reasongen.config import parse_config
    from webui.services import AppConfig

    return parse_config(AppConfig, argv, prog="python app.py", description=__doc__.splitlines()[0],
                        env_prefix=ENV_PREFIX, env_aliases=ENV_ALIASES)  # fmt: skip


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

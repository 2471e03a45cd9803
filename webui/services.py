"""What the UI talks to: configuration, the loaded model, the annotation store, rewards, limits.

``Services.build(config)`` loads the model and opens (and migrates) the database; the UI modules
only call methods here and the library functions of ``reasongen`` and ``annotation``. Nothing is
loaded at import time.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from reasongen.config import CommaList
from reasongen.prompt_files import iter_json_lines
from reasongen.rewards.combine import MODES, check_mode

from .auth import REVOKED_FILE, RevokedTokens, TokenSigner, persistent_secret
from .ratelimit import FailureBackoff, RateLimiter

log = logging.getLogger("reasongen.app")

ROOT = Path(__file__).resolve().parent.parent
EXAMPLES_PATH = ROOT / "assets" / "examples" / "shapes.jsonl"
GUIDELINES_PATH = ROOT / "assets" / "guidelines" / "default.md"
MAX_SLOTS = 8
"""Upper bound on candidates shown side by side (generation and annotation)."""
USER_FREE_FAILURES = 3
"""Failed logins for one username before each further attempt has to wait (``login_backoff_s``)."""
ADDRESS_FREE_FAILURES = 10
"""The same for one client address (many users may share one, e.g. behind a NAT)."""


@dataclass
class AppConfig:
    """Settings of the app (flags and ``REASONGEN_*`` environment variables, see ``app.py``)."""

    model: str | None = field(
        default=None, metadata={"help": "HF-format Janus folder or hub id; default: the embedded model."}
    )
    recipe: str = field(default="got-r1", metadata={"help": "Default prompt recipe."})
    db: str | None = field(
        default=None,
        metadata={"help": "SQLAlchemy URL or SQLite file path; default: <data_dir>/reasongen.db."},
    )
    data_dir: str = field(default="data", metadata={"help": "Folder for the database and images."})
    rewards: CommaList = field(
        default=CommaList(["shapes"]),
        metadata={"help": "Reward names (reasongen.rewards) scored per candidate, e.g. shapes,hps."},
    )
    combine: str = field(
        default="weighted_sum", metadata={"help": f"How rewards combine: {', '.join(MODES)}."}
    )
    device: str | None = field(default=None, metadata={"help": "cpu, cuda, cuda:1 (default: auto)."})
    host: str = field(default="127.0.0.1", metadata={"help": "Interface to listen on."})
    port: int = field(default=7860, metadata={"help": "Port to listen on."})
    max_prompt_chars: int = field(default=300, metadata={"help": "Longest prompt accepted."})
    max_candidates: int = field(default=4, metadata={"help": "Most candidates per generation."})
    max_cot_tokens: int = field(default=256, metadata={"help": "Cap on chain-of-thought tokens."})
    concurrency: int = field(default=1, metadata={"help": "Generations running at once (shared queue)."})
    rate_limit: int = field(
        default=10, metadata={"help": "Generations per client address per rate window (see README)."}
    )
    rate_window_s: float = field(default=60.0, metadata={"help": "Length of the rate-limit window."})
    login_limit: int = field(
        default=30, metadata={"help": "Login attempts per client address per rate window."}
    )
    login_backoff_s: float = field(
        default=1.0,
        metadata={"help": f"After {USER_FREE_FAILURES} failed logins for a username (or "
                  f"{ADDRESS_FREE_FAILURES} from an address) the next attempt waits this long, "
                  "doubling with each further failure up to 15 min; a successful login clears "
                  "the username's count, an hour without attempts clears any count."},
    )  # fmt: skip
    token_ttl_s: float = field(
        default=12 * 3600.0,
        metadata={"help": "Seconds a login lasts (the browser's token and the page's session); "
                  "then log in again. Logging out ends it at once, for every tab."},
    )  # fmt: skip
    secret: str | None = field(
        default=None,
        metadata={"help": "Key signing login tokens (prefer the environment variable: a command line "
                  "is visible to other users); default: a random key kept in <data_dir>/.secret "
                  "(made on first start, owner-only), so logins survive restarts."},
    )  # fmt: skip

    def __post_init__(self) -> None:
        self.rewards = CommaList(self.rewards)  # "shapes,hps" (a flag, the environment) or names
        check_mode(self.combine, "combine")
        if not 1 <= self.port <= 65535:
            raise ValueError(f"port must be in 1..65535, got {self.port}")
        if not 1 <= self.max_candidates <= MAX_SLOTS:
            raise ValueError(f"max_candidates must be in 1..{MAX_SLOTS}, got {self.max_candidates}")
        for name in ("max_prompt_chars", "max_cot_tokens", "concurrency", "rate_limit", "login_limit"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be at least 1, got {getattr(self, name)}")
        for name in ("rate_window_s", "login_backoff_s", "token_ttl_s"):
            if not 0 < getattr(self, name) < float("inf"):
                raise ValueError(f"{name} must be a positive number of seconds, got {getattr(self, name)}")

    def db_url(self) -> str | None:
        """The database as a SQLAlchemy URL (a bare file path becomes ``sqlite:///<abs path>``)."""
        if self.db is None or "://" in self.db:
            return self.db
        return f"sqlite:///{Path(self.db).expanduser().resolve()}"


@dataclass(frozen=True)
class Example:
    category: str
    prompt: str
    metadata: dict[str, Any] | None


def load_examples(path: str | os.PathLike[str] = EXAMPLES_PATH) -> list[Example]:
    """Example prompts (JSON lines with ``category``, ``prompt``, GenEval-style ``metadata``)."""
    p = Path(path)
    if not p.is_file():
        return []
    return [Example(d.get("category", ""), d["prompt"], d.get("metadata")) for _, d in iter_json_lines(p)]


@dataclass
class Scores:
    """Per-reward outputs for a group of samples, the combined score, and rewards that failed."""

    outputs: dict[str, Any]
    combined: list[float | None]
    errors: dict[str, str]

    def table(self) -> list[dict[str, Any]]:
        """One dict per sample: ``{reward: score, ..., "combined": score}`` (JSON-ready)."""
        n = len(self.combined)
        rows: list[dict[str, Any]] = [{} for _ in range(n)]
        for name, out in self.outputs.items():
            for i in range(n):
                rows[i][name] = _num(out.scores[i])
        for i in range(n):
            rows[i]["combined"] = _num(self.combined[i])
        return rows


def _num(x: Any) -> float | None:
    return None if x is None else float(x)


class Services:
    """The model, the annotation store, the rewards, the login tokens and the limits of one app."""

    def __init__(
        self,
        config: AppConfig,
        loaded: Any,
        store: Any,
        rewards: Mapping[str, Callable[..., Any]] | None = None,
        examples: Sequence[Example] | None = None,
        guidelines: str | None = None,
    ) -> None:
        self.config = config
        self.loaded = loaded
        self.store = store
        self.rewards = dict(rewards or {})
        self.examples = list(load_examples() if examples is None else examples)
        if guidelines is None and GUIDELINES_PATH.is_file():
            guidelines = GUIDELINES_PATH.read_text(encoding="utf-8")
        self.default_guidelines = guidelines or ""
        self.limiter = RateLimiter(config.rate_limit, config.rate_window_s)
        self.login_limiter = RateLimiter(config.login_limit, config.rate_window_s)
        self.user_backoff = FailureBackoff(USER_FREE_FAILURES, config.login_backoff_s)
        self.address_backoff = FailureBackoff(ADDRESS_FREE_FAILURES, config.login_backoff_s)
        revoked = RevokedTokens(Path(config.data_dir) / REVOKED_FILE)
        self.signer = TokenSigner(config.secret, max_age_s=config.token_ttl_s, revoked=revoked)

    @classmethod
    def build(cls, config: AppConfig, rewards: Mapping[str, Any] | None = None) -> Services:
        """Load the model, open and migrate the database, build the configured rewards."""
        from annotation.store import Store
        from reasongen.loading import load_model

        loaded = load_model(config.model, device=config.device)
        if config.secret is None:
            config = replace(config, secret=persistent_secret(config.data_dir))
        store = Store(config.db_url(), config.data_dir, **store_pool_kwargs(config))
        built = build_rewards(config.rewards) if rewards is None else dict(rewards)
        return cls(config, loaded, store, built)

    def current_user(self, user: Any) -> dict[str, Any] | None:
        """The session's user while its login token is valid (not expired, not logged out), else
        None: a logout in one tab, or the token's age, ends every session of that login."""
        if not isinstance(user, dict) or "id" not in user:
            return None
        return user if self.signer.verify(user.get("token")) == user["id"] else None

    def example_metadata(self, prompt: str) -> dict[str, Any] | None:
        """The GenEval metadata of the example whose prompt is ``prompt`` (None if none is)."""
        for ex in self.examples:
            if ex.prompt == prompt:
                return ex.metadata
        return None

    def prompt_metadata(self, prompt: str) -> dict[str, Any] | None:
        """GenEval metadata for ``prompt``: the example's, else the shapes world's reading of it.

        A typed prompt in the shapes world's language ("two green stars", "a red circle left of a
        blue square") is read by ``reasongen.shapes.parse.parse_prompt``; anything else gets None
        and is scored without metadata.
        """
        from reasongen.shapes.parse import parse_prompt

        meta = self.example_metadata(prompt)
        return meta if meta is not None else parse_prompt(prompt)

    def score(self, samples: Sequence[Any]) -> Scores:
        """Score samples with every reward; a reward that fails is reported, never fatal."""
        from reasongen.rewards import RewardOutput, combine_outputs

        outputs: dict[str, Any] = {}
        errors: dict[str, str] = {}
        for name, reward in self.rewards.items():
            try:
                out = reward(list(samples))
                outputs[name] = RewardOutput(name, list(out.scores), list(out.details))
            except Exception as err:  # a broken or unavailable reward model must not kill the page
                log.warning("reward %s failed: %s", name, err)
                errors[name] = f"{type(err).__name__}: {err}"
        combined: list[float | None] = [None] * len(samples)
        if outputs:
            comb = combine_outputs(list(outputs.values()), mode=self.config.combine, on_missing="skip")
            combined = list(comb.scores)
        return Scores(outputs, combined, errors)

    def close(self) -> None:
        if self.store is not None:
            self.store.close()


DB_SPARE_CONNECTIONS = 4
"""Connections beyond the queues' concurrency, for the unqueued page events (page load, tab views)."""


def store_pool_kwargs(config: AppConfig) -> dict[str, int]:
    """The database pool the app needs: one persistent connection per event that can run at once
    (the annotation queue's ``ANNOTATE_LIMIT``, the generation queue's ``concurrency`` and
    ``DB_SPARE_CONNECTIONS``), with ``annotation.db.make_engine``'s overflow above it. A server
    database only; SQLite keeps the store's own pool."""
    from sqlalchemy.engine import make_url

    from .common import ANNOTATE_LIMIT

    url = config.db_url()
    if url is None or make_url(url).get_backend_name() == "sqlite":
        return {}
    return {"pool_size": ANNOTATE_LIMIT + config.concurrency + DB_SPARE_CONNECTIONS}


def build_rewards(names: Sequence[str]) -> dict[str, Any]:
    """Rewards by registry name; a name that cannot be built is logged and left out."""
    if not names:
        return {}
    from reasongen.rewards import list_rewards, make_reward

    out = {}
    for name in names:
        if name not in list_rewards():
            raise ValueError(f"unknown reward {name!r}; choose from {', '.join(list_rewards())}")
        try:
            out[name] = make_reward([name])
        except Exception as err:  # e.g. the reward's module is missing optional dependencies
            log.warning("reward %s unavailable: %s", name, err)
    return out

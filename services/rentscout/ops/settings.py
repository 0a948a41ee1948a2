"""Every setting of the project: the runtime's and each service's settings classes, gathered here because
ops is the layer that sees all services (the runtime names none). The README's configuration table
(scripts/readme_config.py), the deployment config (scripts/gen_deploy_config.py) and `rentscout serve`'s
warning about unknown `RENTSCOUT_*` variables read from here.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Mapping
from types import ModuleType

from rentscout.analyzer_service import settings as analyzer_settings
from rentscout.cache_service import settings as cache_settings
from rentscout.db import settings as db_settings
from rentscout.export_service import settings as export_settings
from rentscout.runtime import config
from rentscout.runtime.config import PREFIX, EnvVar, env_vars
from rentscout.wire.metadata import CLIENT_ENV_VARS

# The modules whose settings classes make up the whole configuration surface, in the README's order.
SETTINGS_MODULES: tuple[ModuleType, ...] = (config, export_settings, cache_settings, analyzer_settings, db_settings)


def all_settings() -> list[type]:
    """Every settings class of the project, in the order of SETTINGS_MODULES."""
    classes: list[type] = []
    for module in SETTINGS_MODULES:
        classes += [
            obj
            for obj in vars(module).values()
            if dataclasses.is_dataclass(obj)
            and isinstance(obj, type)
            and obj.__module__ == module.__name__
            and any(True for _ in env_vars(obj))
        ]
    return classes


def all_env_vars() -> list[EnvVar]:
    return [var for cls in all_settings() for _, var in env_vars(cls)]


def unknown_env_vars(environ: Mapping[str, str] | None = None) -> list[str]:
    """`RENTSCOUT_*` variables that no setting reads (typos worth a warning at start)."""
    environ = os.environ if environ is None else environ
    known = {var.name for var in all_env_vars()} | CLIENT_ENV_VARS
    return sorted(k for k in environ if k.startswith(PREFIX) and k not in known)


def markdown_table() -> str:
    """The README's configuration table."""
    rows = ["| variable | default | meaning |", "|---|---|---|"]
    for cls in all_settings():
        for f, var in env_vars(cls):
            default = "" if f.default in (None, "") else f"`{f.default}`"
            rows.append(f"| `{var.name}` | {default} | {var.help} |")
    return "\n".join(rows)

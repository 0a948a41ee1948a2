"""Build hook of rentscout-core: the generated stubs of ../gen go into the wheel, not into editable installs.

A `force-include` table would copy gen/ into site-packages in editable (dev) installs too, where that copy
shadows the checkout's gen/ and goes stale at the next `make codegen`; editable installs reach gen/ through
`dev-mode-dirs` instead.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from hatchling.builders.hooks.plugin.interface import BuildHookInterface


class GeneratedStubsHook(BuildHookInterface):  # type: ignore[type-arg]
    def initialize(self, version: str, build_data: dict[str, Any]) -> None:
        if self.target_name == "wheel" and version == "standard":
            build_data["force_include"][str(Path(self.root).parent / "gen" / "rentscout")] = "rentscout"

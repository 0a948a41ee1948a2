"""The command line's parser: a mistyped flag is reported by the subcommand it was given to, with that
subcommand's usage and the closest flag it knows (`rentscout export --fromat csv` -> did you mean --format?).

argparse hands arguments no subparser recognised up to the top-level parser, which then prints the top-level
usage; here the innermost subparser that left them over is remembered and reports them itself."""

from __future__ import annotations

import argparse
import difflib
from collections.abc import Sequence
from typing import Any, NoReturn

_LEAF = "_rentscout_unrecognized_by"


class Parser(argparse.ArgumentParser):
    """An ArgumentParser whose subparsers (the same class) report unrecognized arguments themselves."""

    def parse_known_args(  # type: ignore[override]
        self,
        args: Sequence[str] | None = None,
        namespace: Any = None,
    ) -> tuple[argparse.Namespace, list[str]]:
        ns, extras = super().parse_known_args(args, namespace)
        if extras and not hasattr(ns, _LEAF):  # the innermost parser runs first: it keeps the mark
            setattr(ns, _LEAF, self)
        return ns, extras

    def parse_args(  # type: ignore[override]
        self,
        args: Sequence[str] | None = None,
        namespace: Any = None,
    ) -> argparse.Namespace:
        ns, extras = self.parse_known_args(args, namespace)
        leaf: Parser = vars(ns).pop(_LEAF, self)
        if extras:
            leaf.unrecognized(extras)
        return ns

    def unrecognized(self, extras: list[str]) -> NoReturn:
        message = f"unrecognized arguments: {' '.join(extras)}"
        hints = [f"did you mean {near}?" for near in (self.closest_flag(e) for e in extras if e.startswith("-")) if near]
        self.error("; ".join([message, *hints]) + f"\n(`{self.prog} --help` lists every option)")

    def closest_flag(self, given: str) -> str | None:
        """The known option string nearest to `given` (its `=value` ignored), or None."""
        name = given.split("=", 1)[0]
        known = [o for o in self._option_string_actions if o.startswith("--") == name.startswith("--")]
        near = difflib.get_close_matches(name, known, n=1, cutoff=0.6)
        return near[0] if near else None

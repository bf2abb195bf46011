"""The README opens with the two commands, and CI runs exactly the second one."""

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _commands() -> list[str]:
    readme = (ROOT / "README.md").read_text()
    return re.findall(r"```sh\n(.+?)\n```", readme)


def test_readme_opens_with_the_two_commands() -> None:
    first, second = _commands()[:2]
    assert first.startswith("python3 -m venv .venv") and first.endswith("depai up")
    assert second.startswith("python3 -m venv .venv") and "pytest" in second


def test_ci_runs_exactly_the_readme_test_command() -> None:
    ci = (ROOT / ".ci" / "run").read_text().strip().splitlines()
    assert ci[-1] == _commands()[1]

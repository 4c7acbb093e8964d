"""Errors the harness reports to users (never as a traceback) and the exit codes."""

from __future__ import annotations

from dataclasses import dataclass

EXIT_PASS = 0
EXIT_FAIL = 1
EXIT_INPUT = 2
EXIT_UNKNOWN = 3
# The harness itself failed (a bug, or the machine refused it something): never a verdict on the gateway.
EXIT_CRASH = 4


class HarnessError(Exception):
    """A problem the user can fix; its message is printed as is, exit code 2."""

    exit_code = EXIT_INPUT


@dataclass(frozen=True)
class InputProblem:
    """One problem in an input file, located for the user."""

    file: str
    line: int | None
    column: int | None
    key: str
    message: str
    hint: str | None = None

    def render(self) -> str:
        where = self.file
        if self.line is not None:
            where += f":{self.line}"
            if self.column is not None:
                where += f":{self.column}"
        text = f"{where}: {self.key or '<root>'}: {self.message}"
        if self.hint:
            text += f"\n  hint: {self.hint}"
        return text


class InputError(HarnessError):
    """One or more problems in an input file."""

    def __init__(self, problems: list[InputProblem]) -> None:
        self.problems = problems
        super().__init__("\n".join(p.render() for p in problems))

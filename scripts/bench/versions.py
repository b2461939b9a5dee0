"""The versions of the tap under test: a baseline ref ("before") and the working tree ("new").

The baseline is extracted with ``git archive`` into a temporary directory and run from there
with the same virtualenv; the simulator always comes from the working tree.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


@dataclass(frozen=True)
class Code:
    """One version of the tap: a directory holding its ``tap_deepconverse`` package."""

    label: str  # "before" or "new"
    root: Path
    ref: str

    def env(self) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("TAP_DEEPCONVERSE_")}
        env["PYTHONPATH"] = str(self.root)
        return env

    def command(self, *args: str) -> list[str]:
        return [sys.executable, "-m", "tap_deepconverse", *args]

    def package_dir(self, cwd: Path) -> Path:
        """Where the tap's package is imported from when run as the benchmark runs it."""
        probe = "import tap_deepconverse; print(tap_deepconverse.__file__)"
        done = subprocess.run(
            [sys.executable, "-c", probe],
            env=self.env(),
            cwd=cwd,
            capture_output=True,
            text=True,
            check=True,
        )
        return Path(done.stdout.strip()).parent


def git(*args: str) -> str:
    done = subprocess.run(["git", *args], cwd=REPO, capture_output=True, text=True, check=True)
    return done.stdout.strip()


def extract_baseline(ref: str, into: Path) -> Code:
    """``git archive <ref> | tar -x -C <into>``."""
    try:
        commit = git("rev-parse", "--verify", "--short", f"{ref}^{{commit}}")
    except subprocess.CalledProcessError:
        raise SystemExit(f"--baseline {ref}: not a commit of this repository") from None
    into.mkdir(parents=True)
    archive = subprocess.Popen(["git", "archive", commit], cwd=REPO, stdout=subprocess.PIPE)
    extract = subprocess.run(["tar", "-x", "-C", str(into)], stdin=archive.stdout, check=False)
    if archive.stdout is not None:
        archive.stdout.close()
    if archive.wait() != 0 or extract.returncode != 0:
        raise SystemExit(f"cannot extract {ref} with git archive")
    return Code("before", into, commit)


def working_tree() -> Code:
    return Code("new", REPO, git("describe", "--always", "--dirty"))


def new_first(codes: Sequence[Code]) -> list[Code]:
    """The order of runs on one simulator: the new code first, so that the simulator's cold
    caches (a record's JSON is made when it is first served) count against it, not for it."""
    return sorted(codes, key=lambda code: code.label != "new")


def in_order(codes: Sequence[Code], rows: dict[str, list[str]]) -> list[list[str]]:
    """A table's rows, one per code, in the order the codes were given (before, then new)."""
    return [rows[code.label] for code in codes if code.label in rows]

"""The import contracts in pyproject.toml (run by `make lint` as `lint-imports`) hold on this
tree, and each kind of contract fails when a violation is planted in a copy of it."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
LINT_IMPORTS = Path(sys.executable).with_name("lint-imports")
CONFIG = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["importlinter"]


def lint_imports(tree: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(LINT_IMPORTS), "--no-cache"],
        cwd=tree,
        # wide enough that a long contract name and its BROKEN/KEPT stay on one line
        env={**os.environ, "PYTHONPATH": str(tree), "COLUMNS": "400"},
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )


@pytest.fixture(scope="module")
def tree_copy(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The root packages and pyproject.toml, copied (no tests, no .venv)."""
    tree = tmp_path_factory.mktemp("tree")
    shutil.copy(ROOT / "pyproject.toml", tree / "pyproject.toml")
    for package in CONFIG["root_packages"]:
        shutil.copytree(
            ROOT / package, tree / package, ignore=shutil.ignore_patterns("__pycache__")
        )
    return tree


def test_the_contracts_hold_on_this_tree() -> None:
    result = lint_imports(ROOT)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "0 broken" in result.stdout


@pytest.mark.parametrize(
    ("module", "source", "broken"),
    [
        # the ledger (bottom layer) reaching up into the marketplace
        ("ledger/_planted.py", "import marketplace.models\n", "Apps depend downwards only"),
        # the Stripe app depending on a domain app that registers into it
        ("stripe_gateway/_planted.py", "import payouts.selectors\n", "Apps depend downwards"),
        # a cycle between two modules of one app
        ("payouts/_planted.py", "import payouts.tasks\n", "No import cycles"),
        # the pure interpreter importing Django
        ("ledger/numscript/_planted.py", "import django.db\n", "plain Python"),
        # product code importing the Stripe emulator
        ("reconciliation/_planted.py", "import stripe_emulator\n", "Stripe emulator"),
    ],
)
def test_a_planted_violation_breaks_its_contract(
    tree_copy: Path, module: str, source: str, broken: str
) -> None:
    # given: the copy, plus one bad import
    planted = tree_copy / module
    planted.write_text(source)
    if module == "payouts/_planted.py":
        # and the way back, closing the cycle
        (tree_copy / "payouts/tasks.py").write_text(
            (ROOT / "payouts/tasks.py").read_text() + "\nfrom payouts import _planted  # noqa\n"
        )
    try:
        # when
        result = lint_imports(tree_copy)
    finally:
        planted.unlink()
        shutil.copy(ROOT / "payouts/tasks.py", tree_copy / "payouts/tasks.py")

    # then
    assert result.returncode == 1, result.stdout + result.stderr
    broken_lines = [line for line in result.stdout.splitlines() if " BROKEN" in line]
    assert len(broken_lines) == 1, result.stdout
    assert broken in broken_lines[0]

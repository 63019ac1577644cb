"""The layers (pyproject's [tool.importlinter] contracts) hold, and a wrong import breaks them."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).parents[1]
PACKAGES = ("schemas", "streams", "agents", "web")


def lint_imports(root: Path) -> subprocess.CompletedProcess[str]:
    """import-linter on the packages under ``root`` (found there first), with ``root``'s contracts."""
    command = [
        str(Path(sys.executable).parent / "lint-imports"),
        "--no-cache",
        "--config",
        str(root / "pyproject.toml"),
    ]
    env = {**os.environ, "PYTHONPATH": str(root)}
    return subprocess.run(command, cwd=root, env=env, capture_output=True, text=True, timeout=120)


def test_the_layers_hold() -> None:
    done = lint_imports(ROOT)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "0 broken" in done.stdout


def copy_of_the_packages(tmp_path: Path) -> Path:
    for package in PACKAGES:
        shutil.copytree(ROOT / package, tmp_path / package, ignore=shutil.ignore_patterns("__pycache__", "static"))
    shutil.copy(ROOT / "pyproject.toml", tmp_path)
    return tmp_path


def test_the_runtime_importing_the_gateway_breaks_them(tmp_path: Path) -> None:
    root = copy_of_the_packages(tmp_path)
    with (root / "streams" / "topics.py").open("a") as topics:
        topics.write("\nfrom web import auth  # noqa: E402, F401 - the wrong way up\n")
    done = lint_imports(root)
    assert done.returncode != 0
    assert "streams is not allowed to import web" in done.stdout and "streams.topics -> web.auth" in done.stdout


def test_a_transform_importing_the_faust_app_breaks_them(tmp_path: Path) -> None:
    root = copy_of_the_packages(tmp_path)
    with (root / "agents" / "translate.py").open("a") as translate:
        translate.write("\nfrom streams.app import StageApp  # noqa: E402, F401 - the wrong way up\n")
    done = lint_imports(root)
    assert done.returncode != 0 and "agents is not allowed to import streams.app" in done.stdout


MAX_MODULE_LINES = 350
"""One module, one job: past this a module is doing two, and is split (#21)."""


def test_no_module_is_over_the_size_limit() -> None:
    modules = [path for package in PACKAGES for path in (ROOT / package).rglob("*.py")]
    sizes = {str(path.relative_to(ROOT)): len(path.read_text().splitlines()) for path in modules}
    assert "agents/stt.py" in sizes
    assert {module: lines for module, lines in sizes.items() if lines > MAX_MODULE_LINES} == {}

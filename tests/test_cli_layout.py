"""The command line lives in emlab.cli and only there: no other emlab module imports typer (or click).

Read statically with `ast` (any import statement anywhere in a module counts, deferred or not);
pkgutil imports only the packages it walks.
"""

from __future__ import annotations

import ast
import pkgutil
import subprocess
import sys
from pathlib import Path

import pytest

import emlab

CLI_LIBRARIES = {"typer", "click"}


def _modules() -> dict[str, Path]:
    out = {"emlab": Path(emlab.__file__)}
    for info in pkgutil.walk_packages(emlab.__path__, "emlab."):
        folder = Path(info.module_finder.path)
        leaf = info.name.rpartition(".")[2]
        out[info.name] = folder / leaf / "__init__.py" if info.ispkg else folder / f"{leaf}.py"
    return out


def _imported_roots(path: Path) -> set[str]:
    roots: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), str(path))):
        if isinstance(node, ast.Import):
            roots.update(a.name.partition(".")[0] for a in node.names)
        elif isinstance(node, ast.ImportFrom) and not node.level and node.module:
            roots.add(node.module.partition(".")[0])
    return roots


def test_only_emlab_cli_imports_typer():
    mods = _modules()
    assert "emlab.cli" in mods and "emlab.cli.judges" in mods  # the walk sees the CLI package
    offenders = {
        name: sorted(_imported_roots(path) & CLI_LIBRARIES)
        for name, path in mods.items()
        if name != "emlab.cli" and not name.startswith("emlab.cli.")
    }
    offenders = {k: v for k, v in offenders.items() if v}
    assert not offenders, f"typer/click imported outside emlab.cli: {offenders}"


def test_python_dash_m_emlab_cli_runs_the_app():
    out = subprocess.run([sys.executable, "-m", "emlab.cli", "--help"], capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    for group in ("models", "sample", "run", "runs", "eval", "data", "directions", "steer", "train", "bench", "judge"):
        assert group in out.stdout


@pytest.mark.parametrize(
    ("argv", "message"),
    [(["compare"], "No such command 'compare'"), (["train", "--bogus"], "No such option: --bogus")],
)
def test_usage_errors_are_one_line_with_exit_code_2_not_a_traceback(monkeypatch, capsys, argv, message):
    from emlab.cli import main

    monkeypatch.setattr(sys, "argv", ["emlab", *argv])
    with pytest.raises(SystemExit) as exit_info:
        main()
    err = capsys.readouterr().err
    assert exit_info.value.code == 2
    assert f"Error: {message}" in err and "Traceback" not in err

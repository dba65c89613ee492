"""The package's shape: no import cycle, the core imports no stage, and a non-editable install carries every
subpackage (pyproject.toml finds them all)."""

import ast
import os
import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "coverlora"
# The stage packages: each serves one stage script (or serve.py). The flat modules beside them are the core.
STAGES = {"train", "merge", "generate", "metrics", "service"}


def module_name(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def modules() -> dict[str, Path]:
    return {module_name(p): p for p in PACKAGE.rglob("*.py")}


def imports_of(path: Path, known: set[str]) -> set[str]:
    """Every coverlora module `path` imports, at the top or inside a function (a lazy import is still a cycle)."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("coverlora"):
            assert node.level == 0, f"{path}: relative import"
            for alias in node.names:  # `from coverlora.x import y`: y may be a module
                candidate = f"{node.module}.{alias.name}"
                found.add(candidate if candidate in known else node.module)
        elif isinstance(node, ast.Import):
            found |= {a.name for a in node.names if a.name.startswith("coverlora")}
    return {name for name in found if name in known}


def graph() -> dict[str, set[str]]:
    mods = modules()
    return {name: imports_of(path, set(mods)) - {name} for name, path in mods.items()}


def find_cycle(edges: dict[str, set[str]]) -> list[str] | None:
    """A cycle of imports as a path (first == last), or None. A package importing its own submodule is no cycle."""
    state: dict[str, int] = {}
    path: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        path.append(node)
        for dep in sorted(edges.get(node, ())):
            if dep.startswith(node + "."):
                continue
            if state.get(dep) == 1:
                return path[path.index(dep):] + [dep]
            if dep not in state and (cycle := visit(dep)):
                return cycle
        path.pop()
        state[node] = 2
        return None

    for node in sorted(edges):
        if node not in state and (cycle := visit(node)):
            return cycle
    return None


def test_there_is_no_import_cycle():
    cycle = find_cycle(graph())
    assert cycle is None, "import cycle: " + " -> ".join(cycle)


def test_the_cycle_check_finds_a_cycle(tmp_path):
    (tmp_path / "a.py").write_text("def f():\n    from coverlora.b import x\n")  # lazy imports count
    assert imports_of(tmp_path / "a.py", {"coverlora.a", "coverlora.b"}) == {"coverlora.b"}
    assert find_cycle({"p.a": {"p.b"}, "p.b": {"p.c"}, "p.c": {"p.a"}}) == ["p.a", "p.b", "p.c", "p.a"]
    assert find_cycle({"p": {"p.a"}, "p.a": set()}) is None


def test_the_core_imports_no_stage():
    for name, deps in graph().items():
        parts = name.split(".")
        if len(parts) == 2 and (PACKAGE / f"{parts[1]}.py").is_file():  # a flat core module
            staged = sorted(d for d in deps if d.split(".")[1] in STAGES)
            assert not staged, f"{name} (core) imports the stage module(s) {staged}"


def test_every_folder_of_the_package_is_a_package():
    for folder in PACKAGE.rglob("*"):
        if folder.is_dir() and folder.name != "__pycache__" and any(folder.glob("*.py")):
            assert (folder / "__init__.py").is_file(), f"{folder} has modules but no __init__.py"


def test_a_non_editable_install_imports_every_subpackage_outside_the_repository(tmp_path):
    # Built from a copy: setuptools writes build/ and *.egg-info beside the sources it builds.
    source = tmp_path / "source"
    shutil.copytree(PACKAGE, source / "coverlora", ignore=shutil.ignore_patterns("__pycache__"))
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(ROOT / name, source / name)
    target = tmp_path / "site"
    build = subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--no-build-isolation",
                            "--no-index", "--target", str(target), str(source)], capture_output=True, text=True)
    assert build.returncode == 0, build.stderr[-2000:]
    packages = sorted(name for name, path in modules().items() if path.name == "__init__.py")
    code = ("import importlib, sys, coverlora\n"
            f"assert coverlora.__file__.startswith({str(target)!r}), coverlora.__file__\n"
            f"for name in {packages!r}: importlib.import_module(name)\n"
            "from coverlora.scoring.claims import verifier\n"
            "assert verifier.available(), 'the verifier weights are not in the package'\n"
            "from coverlora.scoring.claims import cross_encoder\n"
            "assert cross_encoder.available(), 'the cross-encoder adapter is not in the package'\n"
            "print('ok')")
    # Run from an empty folder with only the installed copy on the path: nothing resolves from the checkout.
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"} | {"PYTHONPATH": str(target)}
    run = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, env=env, capture_output=True, text=True)
    assert run.returncode == 0 and run.stdout.strip() == "ok", run.stderr[-2000:]


def test_the_test_stage_starts_without_the_training_scoring_or_service_stacks():
    """test.py's start imports what decoding needs: no plotting, scikit-learn, TRL, datasets, PEFT (loaded only for
    an unmerged adapter) or the service's web stack (issue 26: start-up in seconds)."""
    import subprocess
    import sys

    heavy = ["matplotlib", "sklearn", "scipy", "trl", "datasets", "peft", "fastapi", "starlette", "uvicorn", "bert_score"]
    code = ("import sys; import coverlora.cli, coverlora.generate.stage; "
            f"print(','.join(m for m in {heavy!r} if m in sys.modules))")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120,
                          cwd=str(__import__("pathlib").Path(__file__).resolve().parents[1]))
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "", f"imported at start: {done.stdout.strip()}"

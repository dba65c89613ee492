"""The Kaggle path: scripts/setup.sh's choice of torch (run on the CPU against a fake nvidia-smi and a fake Python
that logs what it is asked to do), and notebooks/kaggle_t4.ipynb (valid nbformat; its cells run on the CPU)."""

import shutil
import stat
import subprocess
import sys
import types
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
# A Python that answers setup.sh's questions from the environment and logs every call instead of installing.
FAKE_PYTHON = r"""#!/usr/bin/env bash
echo "python $*" >> "$FAKE_LOG"
case "$*" in
  *"import torch, transformers"*) echo "coverlora setup ok (fake)"; exit 0 ;;
  *torch.cuda.is_available*)
    [ -n "${FAKE_CUDA_TORCH:-}" ] && { echo "$FAKE_CUDA_TORCH"; exit 0; }; exit 1 ;;
  *sys.prefix*) echo /opt/conda; exit 0 ;;
  "-m venv"*)
    target="${@: -1}"; mkdir -p "$target/bin"; cp "$0" "$target/bin/python"
    system=false; [ "$3" = "--system-site-packages" ] && system=true
    echo "include-system-site-packages = $system" > "$target/pyvenv.cfg"; exit 0 ;;
  "-m pip"*)
    prev=""; for arg in "$@"; do [ "$prev" = "-c" ] && echo "constraint: $(cat "$arg")" >> "$FAKE_LOG"; prev=$arg; done
    exit 0 ;;
esac
echo "unexpected call: $*" >&2; exit 3
"""


def make_executable(path: Path, text: str) -> Path:
    path.write_text(text, encoding="utf-8")
    path.chmod(path.stat().st_mode | stat.S_IEXEC)
    return path


@pytest.fixture()
def setup_repo(tmp_path):
    """A copy of what setup.sh reads, a fake python and, per test, a fake nvidia-smi on PATH."""
    repo = tmp_path / "repo"
    (repo / "scripts").mkdir(parents=True)
    for name in ("scripts/setup.sh", "requirements.txt", "requirements-embedded.txt"):
        shutil.copy(REPO / name, repo / name)
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    python = make_executable(bin_dir / "fake-python", FAKE_PYTHON)
    return repo, bin_dir, python


def run_setup(setup_repo, *args, gpu: bool, cuda_torch: str = ""):
    repo, bin_dir, python = setup_repo
    if gpu:
        make_executable(bin_dir / "nvidia-smi", "#!/bin/sh\necho 'GPU 0: Tesla T4'\n")
    log = repo.parent / "calls.log"
    log.write_text("")
    env = {"PATH": f"{bin_dir}:/usr/bin:/bin", "PYTHON": str(python), "FAKE_LOG": str(log),
           "FAKE_CUDA_TORCH": cuda_torch, "HOME": str(repo.parent)}
    done = subprocess.run(["bash", str(repo / "scripts/setup.sh"), *args], capture_output=True, text=True, env=env,
                          timeout=60)
    return done, log.read_text().splitlines(), repo


def installs(calls: list[str]) -> list[str]:
    return [call for call in calls if " -m pip install" in call and "--upgrade pip" not in call]


def test_a_working_cuda_torch_is_reused_in_a_venv_with_system_site_packages(setup_repo):
    done, calls, repo = run_setup(setup_repo, gpu=True, cuda_torch="2.5.1+cu121")
    assert done.returncode == 0, done.stderr
    assert "reused the working CUDA torch 2.5.1+cu121 already installed; installed into .venv (made with " \
           "--system-site-packages)" in done.stdout
    assert "include-system-site-packages = true" in (repo / ".venv/pyvenv.cfg").read_text()
    assert not [call for call in installs(calls) if " torch" in call.split("install", 1)[1].replace("-q", "")]
    assert calls.count("constraint: torch==2.5.1+cu121") == 2  # the GPU extras and requirements.txt
    assert any("bitsandbytes liger-kernel" in call for call in installs(calls))


def test_here_installs_into_the_current_environment(setup_repo):
    done, calls, repo = run_setup(setup_repo, "--here", gpu=True, cuda_torch="2.5.1+cu121")
    assert done.returncode == 0, done.stderr
    assert "installed into the current environment (/opt/conda)" in done.stdout
    assert not (repo / ".venv").exists() and not any("-m venv" in call for call in calls)
    assert "constraint: torch==2.5.1+cu121" in calls


def test_a_gpu_without_a_working_torch_gets_one_from_pypi(setup_repo):
    done, calls, repo = run_setup(setup_repo, gpu=True, cuda_torch="")
    assert done.returncode == 0, done.stderr
    assert "GPU without a working CUDA torch: installed torch from PyPI; installed into .venv" in done.stdout
    assert "include-system-site-packages = false" in (repo / ".venv/pyvenv.cfg").read_text()
    assert any(call.endswith("install -q torch bitsandbytes liger-kernel") for call in installs(calls))


def test_no_gpu_pins_the_cpu_torch_first(setup_repo):
    done, calls, _ = run_setup(setup_repo, gpu=False, cuda_torch="2.5.1+cu121")  # a torch without nvidia-smi: ignored
    assert done.returncode == 0, done.stderr
    assert "no GPU: installed the CPU torch 2.13.0" in done.stdout
    assert installs(calls)[0].endswith("install -q torch==2.13.0")
    assert not any("assert torch.cuda.is_available" in call for call in calls)  # no GPU: torch is not asked


def test_an_old_venv_that_cannot_see_the_cuda_torch_is_one_line_exit_2(setup_repo):
    repo = setup_repo[0]
    (repo / ".venv").mkdir()
    (repo / ".venv/pyvenv.cfg").write_text("include-system-site-packages = false\n")
    done, calls, _ = run_setup(setup_repo, gpu=True, cuda_torch="2.5.1+cu121")
    assert done.returncode == 2 and len(done.stderr.strip().splitlines()) == 1
    assert "rm -rf .venv" in done.stderr and not installs(calls)
    done, _, _ = run_setup(setup_repo, "--there", gpu=False)
    assert done.returncode == 2 and "unknown option '--there'" in done.stderr


# ---------------------------------------------------------------------------- the notebook


NOTEBOOK = REPO / "notebooks" / "kaggle_t4.ipynb"


def test_the_notebook_is_valid_and_runs_the_four_stages_with_the_t4_preset():
    nbformat = pytest.importorskip("nbformat")
    notebook = nbformat.read(NOTEBOOK, as_version=4)
    nbformat.validate(notebook)
    code = "\n".join(cell.source for cell in notebook.cells if cell.cell_type == "code")
    assert 'PRESET = "configs/t4-llama2-7b.yaml"' in code
    for stage in ("train", "merge", "test", "metrics"):
        assert f'"{stage}"' in code, stage
    assert "scripts/setup.sh" in code and "eval_summary" in code and "plots" in code
    assert all(not cell.get("outputs") for cell in notebook.cells if cell.cell_type == "code"), "commit it cleared"
    parameters = [cell for cell in notebook.cells if "parameters" in cell.metadata.get("tags", [])]
    assert len(parameters) == 1


def test_the_notebook_runs_on_the_cpu_with_the_demo_preset(tmp_path, tiny_model_path, monkeypatch):
    """Every code cell, in order, in one namespace, with the parameters cell overridden: the demo preset on the tiny
    random model (no SmolLM2), one training step, two test rows of 8 tokens. The summary table and the plots are
    shown inline (IPython's display, recorded)."""
    nbformat = pytest.importorskip("nbformat")
    notebook = nbformat.read(NOTEBOOK, as_version=4)
    shown = []

    class Image:
        def __init__(self, filename):
            self.filename = filename

    display_module = types.ModuleType("IPython.display")
    display_module.Image, display_module.display = Image, shown.append
    monkeypatch.setitem(sys.modules, "IPython", types.ModuleType("IPython"))
    monkeypatch.setitem(sys.modules, "IPython.display", display_module)
    namespace = {"__name__": "__main__"}
    overrides = {"PRESET": "configs/demo-cpu.yaml", "RUN_SETUP": False, "REPO": str(REPO),
                 "RUN_DIR": str(tmp_path / "run"), "PYTHON": sys.executable,
                 "EXTRA": ["--model", tiny_model_path, "--max_steps", "1", "--max_train_rows", "8", "--limit", "2",
                           "--max_new_tokens", "8", "--bootstrap_resamples", "100", "--batch_size", "2"]}
    for cell in notebook.cells:
        if cell.cell_type != "code":
            continue
        exec(compile(cell.source, f"<cell {cell.get('id')}>", "exec"), namespace)  # noqa: S102 - our own notebook
        if "parameters" in cell.metadata.get("tags", []):
            namespace.update(overrides)
    run = tmp_path / "run"
    for name in ("adapter/README.md", "merged/README.md", "eval.csv", "eval_summary.csv", "plots/loss.png"):
        assert (run / name).exists(), name
    assert "| rouge_l |" in (run / "merged" / "README.md").read_text()  # the card holds the eval table
    kinds = [type(item).__name__ for item in shown]
    assert "DataFrame" in kinds and kinds.count("Image") >= 2, kinds
    assert "loss.png" in [Path(item.filename).name for item in shown if isinstance(item, Image)]

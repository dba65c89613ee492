"""What every stage script does around its `main`: parse the config, log, turn failures into one line."""

from __future__ import annotations

import logging
import os
import sys
from collections.abc import Callable, Sequence

from coverlora.errors import UserError
from coverlora.options import parse_cli

RESUME_HINTS = {
    "train": "rerun the same command with --resume to continue from the last checkpoint",
    "prefer": "rerun the same command with --resume: sampled pairs are kept and DPO continues from its last checkpoint",
    "merge": "rerun merge.py: it starts over and replaces merged/ only when done",
    "test": "rerun the same command: finished rows are kept",
    "metrics": "rerun metrics.py: outputs are only replaced when complete",
    "serve": "the service stopped; start it again with the same command",
}


def setup_logging() -> None:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s", datefmt="%H:%M:%S")
    # Library chatter (HTTP, tokenizer forks) drowns the one line per interval that matters.
    for noisy in ("httpx", "urllib3", "filelock", "datasets"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    os.environ.setdefault("HF_DATASETS_DISABLE_PROGRESS_BARS", "1")  # one bar (training) is enough


def run_stage(stage: str, main: Callable, argv: Sequence[str] | None = None) -> None:
    """Exit 0 on success, 2 on a user error (one line, no traceback), 1 on an unexpected error (one line; the
    traceback with COVERLORA_DEBUG=1), 130 on Ctrl-C."""
    setup_logging()
    try:
        main(parse_cli(stage, sys.argv[1:] if argv is None else argv))
    except UserError as exc:
        print(f"error: {exc}", file=sys.stderr)
        sys.exit(2)
    except KeyboardInterrupt:
        print(f"\ninterrupted: {RESUME_HINTS[stage]}", file=sys.stderr)
        sys.exit(130)
    except Exception as exc:  # a bug or an error no check foresaw: still one line, the traceback on request
        if os.environ.get("COVERLORA_DEBUG"):
            raise
        detail = (str(exc).strip().splitlines() or [""])[0][:300]
        print(f"error: {stage} failed unexpectedly ({type(exc).__name__}: {detail}) — set COVERLORA_DEBUG=1 for the "
              f"traceback; {RESUME_HINTS[stage]}", file=sys.stderr)
        sys.exit(1)

"""Publish a run on the Hugging Face Hub: adapter/ (or merged/) with its model card. Optional: nothing else in the
pipeline calls it. Needs a network and a token (hf auth login, or HF_TOKEN). Repositories are made private unless
--public.

Usage:
    python scripts/push_to_hub.py --run runs/demo --repo_id you/coverlora-smollm2            # adapter/
    python scripts/push_to_hub.py --run runs/demo --repo_id you/coverlora-smollm2 --merged   # merged/
    python scripts/push_to_hub.py --run runs/demo --card-only      # only rewrite the cards (adds the metrics table)
"""

import argparse
from pathlib import Path

import _bootstrap

from coverlora.errors import UserError
from coverlora.runs.card import refresh_cards
from coverlora.runs.layout import RunLayout
from coverlora.runs.publish import push_run


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--run", type=Path, required=True, help="the run folder")
    parser.add_argument("--repo_id", help="the Hub repository, user/name")
    parser.add_argument("--merged", action="store_true", help="push merged/ instead of adapter/")
    parser.add_argument("--public", action="store_true", help="make a new repository public (default: private)")
    parser.add_argument("--card-only", action="store_true", help="rewrite the model cards, push nothing")
    args = parser.parse_args()
    layout = RunLayout(args.run)
    if not layout.root.is_dir():
        raise UserError("run folder not found", where=str(args.run))
    if args.card_only:
        print("\n".join(str(path) for path in refresh_cards(layout)) or "no adapter/ or merged/ in this run")
        return
    if not args.repo_id:
        raise UserError("--repo_id is required to push", where="command line", fix="pass --repo_id you/name")
    print(push_run(layout, args.repo_id, merged=args.merged, private=not args.public))


if __name__ == "__main__":
    _bootstrap.run(main)

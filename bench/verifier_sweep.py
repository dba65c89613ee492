"""The cross-encoder's settings, swept on the validation readings (never the held-out ones).

    # on a GPU (one config per process; several share the card), each into OUT/<name>/
    python bench/verifier_sweep.py train --data DATA --out OUT --name r16-e6 --rank 16 --epochs 6
    # another base encoder than the offline MiniLM (a folder: config, weights, tokenizer), e.g. all-mpnet-base-v2
    python bench/verifier_sweep.py train --data DATA --out OUT --name mpnet-r16 --encoder ENCODERS/all-mpnet-base-v2
    # here: each config (and each ensemble of a config's seeds, names joined by '+') blended with the committed
    # logistic reader at the weight and threshold that give the best F1 on validation, as train_verifier.py does
    .venv/bin/python bench/verifier_sweep.py choose --data DATA --dir OUT --out bench/results/verifier_sweep.md
    # configs trained on another encoder find it by its folder's name under --encoders; --committed adds the
    # shipped reader as a row
    .venv/bin/python bench/verifier_sweep.py choose --data DATA --dir OUT --encoders ENCODERS --committed
    # two encoders on the CPU, where all the training sentences would take hours: one fixed random sample each
    .venv/bin/python bench/verifier_sweep.py train --data DATA --out OUT --name mpnet-n2000 --sample 2000 --epochs 2 \
        --encoder ENCODERS/all-mpnet-base-v2

`train` saves the adapter and head (cross_encoder.save); `choose` reads the validation sentences with each and keeps
their probabilities beside it. Neither reads the held-out readings: they stay unseen until the chosen settings are
committed and scripts/train_verifier.py measures them.
"""

from __future__ import annotations

import argparse
import json
import random
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "scripts"))
import _bootstrap  # noqa: E402
from train_verifier import _f1, best_blend, examples, scores  # noqa: E402

from coverlora.errors import UserError  # noqa: E402
from coverlora.runs.layout import write_text_atomic  # noqa: E402
from coverlora.scoring.claims import cross_encoder  # noqa: E402
from coverlora.scoring.claims.verifier import CLASSES, label_of  # noqa: E402

TRAINED_FILE = "trained.json"  # written last by `train`: the config finished (and how long it took)
COMMITTED = "committed (weights/cross_encoder)"  # choose --committed: the shipped reader's row
PROBS_FILE = "validation_cpu.json"  # the validation sentences read here, on the full-precision MiniLM, as shipped


def parts_of(data: str) -> dict:
    items = examples(data)
    return {name: [i for i in items if i["part"] == name] for name in ("train", "validation")}


def train(args) -> None:
    parts = parts_of(args.data)
    settings = cross_encoder.Settings(rank=args.rank, max_length=args.max_length, learning_rate=args.lr,
                                      epochs=args.epochs, batch_size=args.batch_size, seed=args.seed)
    import torch

    torch.set_float32_matmul_precision("high")  # TF32 on a GPU: the larger encoders train in a call's ten minutes
    started = time.perf_counter()
    items = parts["train"][:args.limit] if args.limit else parts["train"]
    if args.sample:  # one fixed sample (not the training seed's): configs on other encoders read the same sentences
        if not 0 < args.sample <= len(items):
            raise UserError(f"--sample {args.sample} is not between 1 and the {len(items)} training sentences",
                            where="--sample")
        items = random.Random(0).sample(items, args.sample)
    model, _ = cross_encoder.fit([i["sentence"] for i in items], [i["row"] for i in items],
                                         [CLASSES.index(i["label"]) for i in items], [i["specific"] for i in items],
                                         settings, encoder_path=args.encoder,
                                         log=lambda line: print(args.name, line, flush=True))
    seconds = time.perf_counter() - started
    folder = Path(args.out) / args.name
    folder.parent.mkdir(parents=True, exist_ok=True)
    cross_encoder.save(model, settings, folder)
    marker = ({"seconds": round(seconds, 1)} | ({"encoder": Path(args.encoder).name} if args.encoder else {})
              | ({"sample": args.sample} if args.sample else {}))
    write_text_atomic(folder / TRAINED_FILE, json.dumps(marker) + "\n")
    print(f"{args.name}: trained in {seconds:.0f} s", flush=True)


def encoder_of(folder: Path, encoders: str | None) -> str | None:
    """The base encoder a config was trained on: None for the offline MiniLM, else its folder under `encoders`."""
    name = json.loads((folder / TRAINED_FILE).read_text()).get("encoder")
    if name is None:
        return None
    if encoders is None or not (Path(encoders) / name).is_dir():
        raise UserError(f"{folder.name} was trained on the encoder {name!r}", where=str(folder / TRAINED_FILE),
                        fix=f"pass --encoders DIR, a folder that holds {name}/")
    return str(Path(encoders) / name)


def reread(folder: Path, val: list, encoders: str | None = None) -> list:
    """The validation sentences read by the adapter in `folder` on this machine, where the base encoder is the
    full-precision copy (on the GPU it may have come as an fp16 copy); kept beside the adapter."""
    cached = folder / PROBS_FILE
    if not cached.is_file():
        model, tokenizer, settings = cross_encoder.load(str(folder), encoder_of(folder, encoders))
        probs = cross_encoder.probabilities_of(model, tokenizer, [i["sentence"] for i in val], [i["row"] for i in val],
                                               settings.max_length)
        write_text_atomic(cached, json.dumps(probs) + "\n")
    return json.loads(cached.read_text())


def average(readings: list[list]) -> list:
    """The seeds' class probabilities and P(specific), averaged sentence by sentence."""
    out = []
    for per_seed in zip(*readings):
        probs = [sum(p[0][k] for p in per_seed) / len(per_seed) for k in range(len(CLASSES))]
        out.append((probs, sum(p[1] for p in per_seed) / len(per_seed)))
    return out


def alone_f1(tried: dict) -> float:
    """The cross-encoder's own F1 at its best threshold, unblended: best_blend's weight 1 (the last of
    BLEND_WEIGHTS), which compares encoders without the logistic reader's share."""
    return round(_f1(tried[str(1.0)]), 3)


def trained_on(marker: dict) -> str:
    """What a config's trained.json says beyond its settings: its base encoder and training sample, if any."""
    return "".join(f" {key} {marker[key]}" for key in ("encoder", "sample") if key in marker)


def choose(args) -> None:
    from coverlora.scoring.claims import verifier

    val = parts_of(args.data)["validation"]
    logistic = verifier.logistic_sentences([i["sentence"] for i in val], [i["row"] for i in val])
    readings = {p.parent.name: reread(p.parent, val, args.encoders) for p in sorted(Path(args.dir).glob(f"*/{TRAINED_FILE}"))}
    settings = {name: json.loads((Path(args.dir) / name / cross_encoder.SETTINGS_FILE).read_text()) for name in readings}
    markers = {name: json.loads((Path(args.dir) / name / TRAINED_FILE).read_text()) for name in readings}
    if args.committed:  # the shipped reader, read the same way: the table's yardstick (no marker: MiniLM, every sentence)
        readings[COMMITTED] = cross_encoder.read_sentences([i["sentence"] for i in val], [i["row"] for i in val])
        settings[COMMITTED] = json.loads((cross_encoder.FOLDER / cross_encoder.SETTINGS_FILE).read_text())
        markers[COMMITTED] = {}
    groups: dict[str, list[str]] = {}
    for name in readings:  # a config's seeds: names that differ only in their "-s<seed>" ending
        groups.setdefault(name.rsplit("-s", 1)[0], []).append(name)
    candidates = {name: [name] for name in readings} | {"+".join(g): g for g in groups.values() if len(g) > 1}
    lines = ["| cross-encoder | settings | blend weight | threshold | precision | recall | recall specific | letter agreement "
             "| F1 | F1 alone |", "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for name, members in candidates.items():
        weight, threshold, tried = best_blend(val, logistic, average([readings[m] for m in members]))
        b, s = tried[str(weight)], settings[members[0]]
        lines.append(f"| {name} | r{s['rank']} e{s['epochs']} lr{s['learning_rate']:g} b{s['batch_size']}{trained_on(markers[members[0]])} "
                     f"| {weight} | {threshold} | {b['precision']} | {b['recall']} | {b['recall_specific']} | "
                     f"{b['letter_agreement_any_flag']} | {round(_f1(b), 3)} | {alone_f1(tried)} |")
    alone = scores(val, [label_of(p, verifier._model()["flag_threshold"]) for p, _ in logistic])
    lines.append(f"| none (the logistic reader alone) | – | 0 | {verifier._model()['flag_threshold']} | {alone['precision']} | "
                 f"{alone['recall']} | {alone['recall_specific']} | {alone['letter_agreement_any_flag']} | {round(_f1(alone), 3)} | – |")
    text = (f"Validation readings: {len(val)} sentences. Command: `{' '.join(sys.argv)}`\n\n" + "\n".join(lines) + "\n")
    if args.out:
        write_text_atomic(Path(args.out), text)
    print(text)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    commands = parser.add_subparsers(dest="command", required=True)
    one = commands.add_parser("train", help="train one config and save it")
    defaults = cross_encoder.Settings()
    for flag, value in (("--rank", defaults.rank), ("--epochs", defaults.epochs), ("--lr", defaults.learning_rate),
                        ("--batch-size", defaults.batch_size), ("--max-length", defaults.max_length),
                        ("--seed", defaults.seed)):
        one.add_argument(flag, type=type(value), default=value)
    one.add_argument("--limit", type=int, default=0, help="train on the first N sentences only (a smoke test)")
    one.add_argument("--sample", type=int, default=0,
                     help="train on a fixed random N of the training sentences (the same N for every config): "
                          "encoders compared where training on all of them is too slow, e.g. on the CPU")
    one.add_argument("--name", required=True, help="the config's folder under --out; '-s<seed>' ends a seed's name")
    one.add_argument("--out", required=True)
    one.add_argument("--encoder", help="the base encoder's folder (default: the offline all-MiniLM-L6-v2)")
    pick = commands.add_parser("choose", help="blend each config with the logistic reader on validation")
    pick.add_argument("--dir", required=True)
    pick.add_argument("--out", help="the table's file (markdown)")
    pick.add_argument("--committed", action="store_true", help="add the committed reader as a row, read the same way")
    pick.add_argument("--encoders", help="where the encoders that configs name (trained.json) are, by folder name")
    for command in (one, pick):
        command.add_argument("--data", required=True)
    args = parser.parse_args()
    train(args) if args.command == "train" else choose(args)


if __name__ == "__main__":
    _bootstrap.run(main)

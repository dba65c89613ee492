"""The Markdown tables the bench scripts write beside their .jsonl results (and redraw from one: --render)."""

from __future__ import annotations

import json
from pathlib import Path

from bench.train_measure import boundaries_ok

TARGETS = {"qlora": 12000, "lora16": 15000}  # real tok/s on one H100; t4: peak <= 15 GiB


def header(title: str, meta: dict) -> list[str]:
    return [f"# {title}: {meta['shape']} on {meta['device']}", "", f"- command: `{meta['command']}`",
            f"- date: {meta['date']}", "- versions: " + ", ".join(f"{k} {v}" for k, v in meta["versions"].items() if v)]


def category_table(ms_by_category: dict) -> list[str]:
    return ["| category | ms/step |", "|---|---:|"] + [f"| {k} | {v} |" for k, v in ms_by_category.items()]


# --------------------------------------------------------------------------------------------- training


def target_note(row: dict) -> str:
    name = row["config"]
    if "tok_per_s" not in row:
        return ""
    if name.startswith("t4"):
        return "peak <= 15 GiB: " + ("yes" if row.get("peak_gib", 99) <= 15 else "NO")
    for prefix, target in TARGETS.items():
        if name.startswith(prefix) and row.get("settings", {}).get("packing"):
            return f">= {target:,}: " + ("yes" if row["tok_per_s"] >= target else "no")
    return ""


def boundary_cell(check: dict) -> str:
    if not check:
        return "n/a (unpacked)"
    if "ok" not in check:
        return check.get("skipped", "")
    packed, leaky = check["packed_vs_separate_max_rel"], check["leaky_vs_separate_median_rel"]
    return ("ok" if boundaries_ok(packed, leaky) else "LEAK?") + f" ({packed:.1e} vs leaky {leaky:.1e})"


def train_markdown(rows: list[dict], meta: dict) -> str:
    ref = next((r for r in rows if r["config"] == "reference" and "tok_per_s" in r), None)
    lines = header("Training bench", meta) + [
        f"- data: {meta['data']}", f"- steps: {meta['warmup']} warm-up + {meta['steps']} timed per config; "
        "tok/s counts real (non-pad) input tokens of the timed steps only", "",
        "| config | real tok/s | ratio vs reference | peak GiB (reserved) | final loss | boundaries | target | what |",
        "|---|---:|---:|---:|---:|---|---|---|"]
    for r in rows:
        if "tok_per_s" not in r:
            lines.append(f"| {r['config']} | – | – | – | – | – | – | {r.get('status', '')}: {r.get('error', '')[:120]} |")
            continue
        ratio = f"{r['tok_per_s'] / ref['tok_per_s']:.1f}x" if ref else "–"
        peak = f"{r['peak_gib']} ({r['peak_reserved_gib']})" if "peak_gib" in r else "–"
        lines.append(f"| {r['config']} | {r['tok_per_s']:,.0f} | {ratio} | {peak} | {r['final_loss']} | "
                     f"{boundary_cell(r.get('boundary_check', {}))} | {target_note(r)} | {r['desc']} |")
    for r in rows:
        if r.get("profile") and "error" not in r["profile"]:
            p = r["profile"]
            lines += ["", f"## Profile: {r['config']} (device time per optimizer step, {p['device_ms_per_step']} ms; "
                          f"wall {r['step_s_median'] * 1000:.0f} ms)", ""] + category_table(p["ms_per_step_by_category"])
            lines += ["", "| top kernels | ms/step | calls/step |", "|---|---:|---:|"]
            lines += [f"| `{k['name']}` | {k['ms_per_step']} | {k['calls_per_step']} |" for k in p["top_kernels"][:15]]
    return "\n".join(lines) + "\n"


def render(jsonl: Path) -> str:
    """Rewrite the .md beside a train_bench results file from its rows and meta line; return it."""
    lines = [json.loads(line) for line in jsonl.read_text(encoding="utf-8").splitlines() if line.strip()]
    meta = next(x["meta"] for x in lines if "meta" in x)
    text = train_markdown([x for x in lines if "config" in x], meta)
    jsonl.with_suffix(".md").write_text(text, encoding="utf-8")
    return text


# --------------------------------------------------------------------------------------------- generation


def gen_markdown(rows: list[dict], meta: dict) -> str:
    lines = header("Generation bench", meta) + [
        f"- data: {meta['data']} ({meta['prompts']} test prompts; letters = prompts x 2 models)",
        f"- max_new_tokens {meta['max_new_tokens']}; random weights never emit EOS, so letters run to the limit", "",
        "| config | letters | new tokens | wall s | generated tok/s | peak GiB | note |", "|---|---:|---:|---:|---:|---:|---|"]
    for r in rows:
        if "error" in r:
            lines.append(f"| {r['config']} | – | – | – | – | – | {r['error']} |")
        elif "new_tokens" in r:
            note = r.get("note", "")
            if "extrapolated_s_all" in r:
                note += f" = {r['extrapolated_s_all'] / 3600:.1f} h"
            lines.append(f"| {r['config']} | {r['letters']} | {r['new_tokens']:,} | {r['seconds']} | {r['tok_per_s']:,.0f} "
                         f"| {r.get('peak_gpu_gib') or '–'} | {note} |")
    decode = [r for r in rows if "wall_ms_per_decode_step" in r]
    if decode:
        lines += ["", f"## Decode steps in-process ({decode[0]['batch']} longest prompts, generate_batch)", "",
                  "| kv_cache | wall ms/step | decode tok/s | prefill + 1st token s | first call s (compiles) |",
                  "|---|---:|---:|---:|---:|"]
        lines += [f"| {r['config'].split('=')[1]} | {r['wall_ms_per_decode_step']} | {r['tok_per_s_decode']:,} | "
                  f"{r['prefill_s']} | {r['first_call_s']} |" for r in decode]
    for r in decode:
        if "device_ms_by_category" in r:
            lines += ["", f"### Where a decode step's time goes: {r['config']}", "",
                      f"device time {r['device_ms_per_decode_step']} ms of {r['wall_ms_per_decode_step']} ms wall "
                      "(the rest: the GPU waiting for Python to launch kernels)", ""] + category_table(r["device_ms_by_category"])
            lines += ["", "| kernel | ms/step |", "|---|---:|"]
            lines += [f"| `{k}` | {v} |" for k, v in r["top_kernels_ms_per_step"].items()]
    return "\n".join(lines) + "\n"

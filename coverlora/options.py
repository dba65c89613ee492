"""How config values arrive: defaults, then a YAML preset's section, then `--key value` flags, each coerced to its
field's type. Unknown sections and keys fail with the closest valid name: a typo must never be silently ignored.
`python -m coverlora.options` prints README's configuration reference.
"""

from __future__ import annotations

import dataclasses
import difflib
import math
import sys
import types
import typing
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Literal, TypeVar

import yaml

from coverlora.config import STAGE_CONFIGS, STAGES, choices
from coverlora.errors import ConfigError


class DuplicateKey(yaml.YAMLError):
    """A mapping gives one key twice: PyYAML would keep the last one silently."""

    def __init__(self, key: object, line: int):
        super().__init__(f"line {line}: key '{key}' is given twice")
        self.key, self.line = key, line


class _UniqueKeyLoader(yaml.SafeLoader):
    def construct_mapping(self, node, deep=False):
        seen = set()
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=deep)
            if key in seen:
                raise DuplicateKey(key, key_node.start_mark.line + 1)
            seen.add(key)
        return super().construct_mapping(node, deep=deep)


_UniqueKeyLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _UniqueKeyLoader.construct_mapping)


def load_yaml(text: str):
    """yaml.safe_load, except that a key given twice in one mapping raises DuplicateKey (every YAML the project
    reads goes through here: presets, a run's stage configs)."""
    return yaml.load(text, Loader=_UniqueKeyLoader)

C = TypeVar("C")


def _closest(key: str, options: Sequence[str]) -> str:
    match = difflib.get_close_matches(key, options, n=1)
    return f"did you mean '{match[0]}'?" if match else f"valid keys: {', '.join(options)}"


BARE_FLAG = object()  # `--key` with no value after it: true for a bool, an error for anything else


def _coerce(key: str, raw: Any, annotation: Any, where: str) -> Any:
    """Turn a YAML or command-line value into the field's type, or fail naming the key."""
    allowed = typing.get_args(annotation) if isinstance(annotation, types.UnionType) else (annotation,)
    if raw is BARE_FLAG:
        if bool in allowed:
            return True
        raise ConfigError("needs a value", where=f"{where}: '{key}'", fix=f"pass --{key} VALUE")
    if raw is None or (isinstance(raw, str) and raw.lower() in ("null", "none") and type(None) in allowed):
        if type(None) in allowed:
            return None
        raise ConfigError("must not be null", where=f"{where}: '{key}'")
    kind = next(t for t in allowed if t is not type(None))
    if typing.get_origin(kind) is Literal:
        kind = str  # which strings: check_choices, in the config's __post_init__
    try:
        if kind is bool:
            if isinstance(raw, bool):
                return raw
            text = str(raw).strip().lower()
            if text in ("true", "yes", "1", "on"):
                return True
            if text in ("false", "no", "0", "off"):
                return False
            raise ValueError
        if kind is int:
            if isinstance(raw, bool) or (isinstance(raw, float) and not raw.is_integer()):
                raise ValueError
            return int(raw)
        if kind is float:
            if isinstance(raw, bool):
                raise ValueError
            number = float(raw)
            if not math.isfinite(number):
                raise ConfigError(f"must be a finite number, got {raw!r}", where=f"{where}: '{key}'")
            return number
        if isinstance(raw, (dict, list, bytes)):
            raise ValueError
        return str(raw)
    except (ValueError, TypeError, OverflowError):
        shown = repr(raw) if len(repr(raw)) <= 60 else repr(raw)[:57] + "..."
        raise ConfigError(f"expected {kind.__name__}, got {shown}", where=f"{where}: '{key}'") from None


def _read_sections(path: Path) -> dict[str, dict]:
    if not path.is_file():
        raise ConfigError("config file not found", where=str(path), fix="check the path given to --config")
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as exc:
        raise ConfigError(f"not UTF-8 text (byte {exc.start})", where=str(path), fix="give a YAML preset") from None
    try:
        loaded = load_yaml(text) or {}
    except DuplicateKey as exc:
        raise ConfigError(f"{exc} (the last one would win silently)", where=str(path),
                          fix=f"keep one '{exc.key}'") from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        line = f" line {mark.line + 1}" if mark else ""
        raise ConfigError(f"not valid YAML{line}: {getattr(exc, 'problem', exc)}", where=str(path)) from None
    if not isinstance(loaded, dict):
        raise ConfigError(f"must be a mapping with {'/'.join(s + ':' for s in STAGES)} sections", where=str(path))
    for section, body in loaded.items():
        if section not in STAGES:
            raise ConfigError(f"unknown section '{section}' ({_closest(str(section), STAGES)})", where=str(path))
        if body is not None and not isinstance(body, dict):
            raise ConfigError(f"section '{section}' must be a mapping of key: value", where=str(path))
    return {section: body or {} for section, body in loaded.items()}


def build_config(cls: type[C], values: dict[str, tuple[Any, str]]) -> C:
    """Build `cls` from {key: (raw value, where it came from)}; unknown keys and bad values fail."""
    hints = typing.get_type_hints(cls)
    names = [f.name for f in dataclasses.fields(cls)]
    kwargs = {}
    for key, (raw, where) in values.items():
        if not isinstance(key, str) or key not in hints:
            raise ConfigError(f"unknown key '{key}' ({_closest(str(key), names)})", where=where)
        kwargs[key] = _coerce(key, raw, hints[key], where)
    return cls(**kwargs)


def collect_values(stage: str, argv: Sequence[str]) -> tuple[dict[str, tuple[Any, str]], dict]:
    """`--config FILE` (this stage's section) overlaid by `--key value` flags (`--flag` alone means true).

    Returns {key: (raw value, where it came from)} and all the file's sections.
    """
    config_file: Path | None = None
    flags: dict[str, tuple[Any, str]] = {}
    args = list(argv)
    while args:
        token = args.pop(0)
        if token in ("-h", "--help"):
            print(usage(stage))
            sys.exit(0)
        if not token.startswith("--") or len(token) == 2:
            raise ConfigError(f"unexpected argument {token!r}", where="command line", fix="pass options as --key value")
        key, has_value, value = token[2:].partition("=")
        key = key.replace("-", "_")
        if not has_value:
            value = args.pop(0) if args and not args[0].startswith("--") else BARE_FLAG
        if key in flags or (key == "config" and config_file is not None):
            raise ConfigError(f"--{key} is given twice", where="command line", fix="keep one")
        if key == "config":
            if value is BARE_FLAG:
                raise ConfigError("needs a value", where="command line: '--config'", fix="pass --config FILE.yaml")
            config_file = Path(value)
        else:
            flags[key] = (value, "command line")
    sections = _read_sections(config_file) if config_file is not None else {}
    values = {key: (raw, str(config_file)) for key, raw in sections.get(stage, {}).items()}
    values.update(flags)
    return values, sections


def parse_cli(stage: str, argv: Sequence[str]) -> Any:
    """Defaults → `--config FILE` section → `--key value` flags."""
    values, sections = collect_values(stage, argv)
    # Later stages find the run folder through the same preset's train section; serve only when it names no model.
    train_dir = (sections.get("train") or {}).get("output_dir")
    if stage != "train" and train_dir and not ({"run", "model"} & set(values)):
        values["run"] = (train_dir, "train.output_dir")
    if stage == "serve" and "run" in values and "model" not in values:
        values["model"] = ("", "a run names its own model")
    return build_config(STAGE_CONFIGS[stage], values)


def usage(stage: str) -> str:
    cls = STAGE_CONFIGS[stage]
    hints = typing.get_type_hints(cls)
    lines = [f"usage: python {stage}.py [--config FILE.yaml] [--key value ...]", "", "options (defaults in brackets):"]
    for f in dataclasses.fields(cls):
        options = choices(hints[f.name])
        shown = "{" + ",".join(options) + "} " if options else ""
        lines.append(f"  --{f.name} {shown}[{f.default}]\n      {f.metadata.get('help', '')}")
    return "\n".join(lines)


def to_yaml_section(stage: str, config: Any) -> str:
    return yaml.safe_dump({stage: dataclasses.asdict(config)}, sort_keys=False)


def markdown_reference() -> str:
    """The config reference for README: every stage's keys, defaults and help (python -m coverlora.options)."""
    out = []
    for stage, cls in STAGE_CONFIGS.items():
        hints = typing.get_type_hints(cls)
        out += [f"**{stage}** (`{stage}.py`, section `{stage}:`)", "", "| key | default | meaning |", "|---|---|---|"]
        for f in dataclasses.fields(cls):
            options = choices(hints[f.name])
            meaning = f.metadata.get("help", "") + (f" Choices: {', '.join(f'`{o}`' for o in options)}." if options else "")
            escaped = meaning.replace("|", "\\|")  # a '|' in the help would end the table cell
            out.append(f"| `{f.name}` | `{f.default}` | {escaped} |")
        out.append("")
    return "\n".join(out)


if __name__ == "__main__":
    print(markdown_reference())

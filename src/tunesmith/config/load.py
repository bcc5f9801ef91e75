"""YAML + dotted command-line overrides -> a validated ``RunConfig``.

Errors name the dotted path (``train.lrr``) and suggest the nearest valid key, so a typo costs one
glance rather than a read of the schema.
"""

from __future__ import annotations

import copy
import difflib
import types
import typing
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ValidationError

from tunesmith.config.schema import RunConfig, stage_problems
from tunesmith.errors import ConfigError


def parse_override(text: str) -> tuple[list[str], Any]:
    """Split ``a.b.c=value`` into a key path and a YAML-typed value (``2e-4`` -> float)."""
    if "=" not in text:
        raise ConfigError(f"override {text!r}: expected KEY=VALUE, e.g. train.lr=2e-4")
    key, raw = text.split("=", 1)
    parts = [p for p in key.strip().split(".") if p]
    if not parts:
        raise ConfigError(f"override {text!r}: empty key")
    try:
        value = yaml.safe_load(raw) if raw.strip() else ""
    except yaml.YAMLError:
        value = raw
    return parts, value


def apply_override(tree: dict[str, Any], parts: list[str], value: Any) -> None:
    """Set ``value`` at ``parts`` in a nested dict/list tree, creating dicts as needed."""
    node: Any = tree
    for i, part in enumerate(parts[:-1]):
        nxt = parts[i + 1]
        if isinstance(node, list):
            node = node[_index(node, part, parts[: i + 1])]
            continue
        if part not in node or node[part] is None:
            node[part] = [] if nxt.isdigit() else {}
        node = node[part]
    last = parts[-1]
    if isinstance(node, list):
        node[_index(node, last, parts)] = value
    else:
        node[last] = value


def _index(node: list[Any], part: str, path: list[str]) -> int:
    dotted = ".".join(path)
    if not part.isdigit() or int(part) >= len(node):
        raise ConfigError(
            f"override {dotted}: list index {part!r} out of range (0..{len(node) - 1})"
        )
    return int(part)


RECIPE_DIR = Path(__file__).with_name("recipes")
"""The shipped recipes (``tunesmith recipes``); ``cli`` resolves a bare recipe name to its file."""


def read_yaml(path: str | Path) -> dict[str, Any]:
    """Read a YAML config file into a dict, with one-line errors.

    Refused, naming file and line: bytes that are not UTF-8, invalid YAML, and a key given twice
    in one mapping (PyYAML would silently keep the last one).
    """
    p = Path(path)
    if not p.is_file():
        raise ConfigError(_not_found(p))
    text = _decode(p, p.read_bytes())
    loader = yaml.SafeLoader(text)
    try:
        node = loader.get_single_node()
        if node is not None:
            _refuse_duplicate_keys(p, node)
        tree = loader.construct_document(node) if node is not None else None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        line = f":{mark.line + 1}" if mark is not None else ""
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        raise ConfigError(f"{p}{line}: invalid YAML ({problem})") from None
    finally:
        loader.dispose()
    if tree is None:
        return {}
    if not isinstance(tree, dict):
        raise ConfigError(f"{p}: top level must be a mapping of sections (model, data, ...)")
    return tree


def _not_found(p: Path) -> str:
    """Why ``p`` cannot be read, suggesting a shipped recipe when the name is close to one."""
    if p.is_dir():
        return f"{p}: is a directory; give a YAML config file or a recipe name"
    if p.parent == Path("."):  # a bare name: most likely a mistyped recipe
        stem = p.name.removesuffix(".yaml").removesuffix(".yml")
        near = difflib.get_close_matches(stem, sorted(f.stem for f in RECIPE_DIR.glob("*.yaml")))
        what = (
            "config file not found" if stem != p.name else "no such config file or shipped recipe"
        )
        if near:
            return f"{p}: {what}; did you mean {near[0]}? (`tunesmith recipes` lists them)"
        return f"{p}: {what}; `tunesmith recipes` lists the shipped recipes"
    return f"{p}: config file not found; run `tunesmith recipes` to list examples"


def _decode(p: Path, raw: bytes) -> str:
    """The file's text; bytes that are not UTF-8 are a one-line error with line and offset."""
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        if raw.startswith((b"\xff\xfe", b"\xfe\xff")):
            raise ConfigError(f"{p}: looks like UTF-16; save the file as UTF-8") from None
        line = raw.count(b"\n", 0, exc.start) + 1
        raise ConfigError(
            f"{p}:{line}: not UTF-8 (byte 0x{raw[exc.start]:02x} at offset {exc.start}); "
            "save the file as UTF-8"
        ) from None


_MERGE_TAG = "tag:yaml.org,2002:merge"


def _refuse_duplicate_keys(p: Path, root: yaml.Node) -> None:
    """Raise on a key given twice in one mapping, naming its dotted path and both lines.

    Keys that come in through ``<<: *anchor`` are not duplicates: overriding them is what the
    merge key is for.
    """
    seen_nodes: set[int] = set()  # aliases repeat nodes; each is checked once
    stack: list[tuple[yaml.Node, tuple[str, ...]]] = [(root, ())]
    while stack:
        node, at = stack.pop()
        if id(node) in seen_nodes:
            continue
        seen_nodes.add(id(node))
        if isinstance(node, yaml.SequenceNode):
            stack.extend((item, (*at, str(i))) for i, item in enumerate(node.value))
        elif isinstance(node, yaml.MappingNode):
            first: dict[tuple[str, str], int] = {}
            for key, value in node.value:
                if key.tag == _MERGE_TAG or not isinstance(key, yaml.ScalarNode):
                    continue
                dotted = ".".join((*at, key.value))
                line = key.start_mark.line + 1
                if (key.tag, key.value) in first:
                    raise ConfigError(
                        f"{p}:{line}: duplicate key {dotted!r} (first at line "
                        f"{first[key.tag, key.value]}); merge the two into one, or delete one "
                        "of them"
                    )
                first[key.tag, key.value] = line
                stack.append((value, (*at, key.value)))


def check_output_dir(run_dir: str | Path) -> None:
    """Refuse a run directory that cannot be made because it, or a folder above it, is a file.

    Raises:
        ConfigError: ``output.dir: PATH is an existing file, ...`` naming the file in the way.
    """
    for part in (Path(run_dir), *Path(run_dir).parents):
        if part.is_dir():
            return
        if part.exists() or part.is_symlink():
            raise ConfigError(
                f"output.dir: {part} is an existing file, not a directory; "
                "choose another output.dir (or move the file)"
            )


def load_config(
    path: str | Path | None = None,
    overrides: list[str] | None = None,
    tree: dict[str, Any] | None = None,
) -> RunConfig:
    """Build a ``RunConfig`` from a YAML file (or a dict) plus ``key.sub=value`` overrides.

    Raises:
        ConfigError: with one line per problem, each naming its dotted path.
    """
    data: dict[str, Any] = copy.deepcopy(tree or {}) if path is None else read_yaml(path)
    for text in overrides or []:
        parts, value = parse_override(text)
        apply_override(data, parts, value)
    where = f"{path}: " if path else ""
    try:
        cfg = RunConfig.model_validate(data)
    except ValidationError as exc:
        lines = [where + format_error(err) for err in exc.errors()]
        raise ConfigError("\n".join(lines)) from None
    try:  # checked against this machine here, so `validate` catches it before any training
        check_output_dir(cfg.output.run_dir)
    except ConfigError as exc:
        raise ConfigError(where + str(exc)) from None
    return cfg


def check_stage_settings(cfg: RunConfig) -> None:
    """The schema's stage/setting rules again, for a config changed after loading.

    ``load_config`` (``tunesmith validate``) applies them already; a recipe calls this because a
    section assigned afterwards (``cfg.method.pref = ...``) is validated on its own.

    Raises:
        ConfigError: one line per setting the stage does not honour, each naming its dotted path.
    """
    problems = stage_problems(cfg)
    if problems:
        raise ConfigError(
            "\n".join(f"{'.'.join(str(p) for p in loc)}: {text}" for loc, _, text in problems)
        )


def format_error(err: Any) -> str:
    """One line for one pydantic error: the dotted path, what is wrong, and a hint."""
    loc = tuple(err["loc"])
    dotted = ".".join(str(p) for p in loc) or "(top level)"
    kind = err["type"]
    if kind == "extra_forbidden":
        valid = _valid_keys(loc[:-1])
        hint = difflib.get_close_matches(str(loc[-1]), valid, n=1, cutoff=0.5)
        prefix = ".".join(str(p) for p in loc[:-1])
        if hint:
            near = f"{prefix}.{hint[0]}" if prefix else hint[0]
            return f"{dotted}: unknown key; did you mean {near}?"
        return f"{dotted}: unknown key; valid keys here: {', '.join(valid)}"
    if kind == "missing":
        return f"{dotted}: required key is missing"
    msg = err["msg"]
    if kind.endswith("_parsing") or kind.endswith("_type") or kind == "literal_error":
        return f"{dotted}: {msg} (got {err.get('input')!r})"
    return f"{dotted}: {msg}"


def _valid_keys(loc: tuple[Any, ...]) -> list[str]:
    """Field names of the config section at ``loc`` (list indices are stepped through)."""
    cls: Any = RunConfig
    for part in loc:
        if isinstance(part, int):
            continue
        fields = getattr(cls, "model_fields", {})
        if part not in fields:
            return []
        cls = _model_in(fields[part].annotation)
        if cls is None:
            return []
    return sorted(getattr(cls, "model_fields", {}))


def _model_in(annotation: Any) -> type[BaseModel] | None:
    """The pydantic model inside an annotation like ``X``, ``X | None`` or ``list[X]``."""
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    origin = typing.get_origin(annotation)
    if origin in (typing.Union, types.UnionType, list):
        for arg in typing.get_args(annotation):
            found = _model_in(arg)
            if found is not None:
                return found
    return None


def dump_config(cfg: RunConfig) -> str:
    """The resolved config as YAML (written to each run directory)."""
    return yaml.safe_dump(cfg.model_dump(mode="json"), sort_keys=False, allow_unicode=True)


def run_section(run: str | Path, name: str, given: dict[str, Any]) -> BaseModel:
    """Section ``name`` (e.g. ``serve``) of a run's ``config.yaml``, with ``given`` values on top.

    ``given`` holds the command-line flags the user set (``None`` values are ignored). A target
    without ``config.yaml`` (a model folder, a hub id) gets the schema defaults.
    """
    cls = _model_in(RunConfig.model_fields[name].annotation)
    assert cls is not None, name
    saved = Path(run) / "config.yaml"
    tree = dict(read_yaml(saved).get(name) or {}) if saved.is_file() else {}
    tree.update({k: v for k, v in given.items() if v is not None})
    try:
        return cls.model_validate(tree)
    except ValidationError as exc:
        lines = [format_error({**e, "loc": (name, *e["loc"])}) for e in exc.errors()]
        raise ConfigError("\n".join(lines)) from None

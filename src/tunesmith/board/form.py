"""The Configure form, derived from the config schema (no Gradio here: plain data, testable).

Every leaf of ``RunConfig`` becomes one :class:`FieldSpec`: booleans a checkbox, ``Literal``
enums a dropdown, a list of enum values a checkbox group, scalars a text box read like a CLI
override (``train.lr=2e-4``), and lists, mappings or optional sections (``data.datasets``,
``eval.tasks``, ``serval``) a YAML box. The form's values turn back into the YAML tree that
``load_config`` validates, so the board accepts and refuses exactly what ``tunesmith validate``
does, with the same one-line messages, which :func:`errors_by_field` places at their field.
"""

from __future__ import annotations

import types
import typing
from dataclasses import dataclass
from typing import Any, Literal

import yaml
from pydantic import BaseModel
from pydantic.fields import FieldInfo

from tunesmith.config.names import TEMPLATE_NAMES
from tunesmith.config.schema import RunConfig, Section
from tunesmith.errors import ConfigError

Kind = Literal["bool", "choice", "multi", "text", "yaml"]
NONE = "(none)"
"""The dropdown entry for ``None`` in an optional enum."""

#: String fields whose values come from a registry: shown as dropdowns of the registry's names.
REGISTRY_CHOICES: dict[str, tuple[str, ...]] = {"model.template": TEMPLATE_NAMES}


@dataclass(frozen=True)
class FieldSpec:
    """One form field: where it sits in the config and how it is edited.

    Attributes:
        path: Dotted config path, e.g. ``train.lr``.
        kind: The widget: ``bool``, ``choice``, ``multi``, ``text`` or ``yaml``.
        default: The schema default, as plain JSON-able data (``None`` for required fields).
        required: The schema has no default.
        optional: ``None`` is an accepted value.
        text_only: A plain string field (its text is not read as YAML: ``123`` stays a string).
        choices: The dropdown / checkbox-group values.
        help: The field's description from the schema.
    """

    path: str
    kind: Kind
    default: Any
    required: bool
    optional: bool
    text_only: bool
    choices: tuple[Any, ...]
    help: str

    @property
    def section(self) -> str:
        """The top-level section (the form's tab)."""
        return self.path.split(".", 1)[0]

    @property
    def group(self) -> str:
        """The nested section holding the field (``method.lora``), or the tab's own name."""
        return self.path.rsplit(".", 1)[0]

    @property
    def name(self) -> str:
        """The field's own name (the widget's label)."""
        return self.path.rsplit(".", 1)[1]


def _strip(annotation: Any) -> tuple[Any, bool]:
    """``(annotation without None / Annotated, whether None is allowed)``."""
    optional = False
    while True:
        origin = typing.get_origin(annotation)
        if origin is typing.Annotated:
            annotation = typing.get_args(annotation)[0]
            continue
        if origin in (typing.Union, types.UnionType):
            args = [a for a in typing.get_args(annotation) if a is not type(None)]
            optional = optional or len(args) < len(typing.get_args(annotation))
            if len(args) == 1:
                annotation = args[0]
                continue
            annotation = typing.Union[tuple(args)]  # noqa: UP007 (rebuilt from parts)
        return annotation, optional


def _scalar(annotation: Any) -> bool:
    """Whether values of this annotation are single scalars (str, numbers, enum values)."""
    annotation, _ = _strip(annotation)
    origin = typing.get_origin(annotation)
    if origin is Literal:
        return True
    if origin in (typing.Union, types.UnionType):
        return all(_scalar(a) for a in typing.get_args(annotation))
    if typing.get_origin(annotation) is typing.Annotated:
        return _scalar(typing.get_args(annotation)[0])
    return annotation in (str, int, float, bool)


def _default(info: FieldInfo) -> Any:
    if info.is_required():
        return None
    from pydantic import TypeAdapter

    value = info.get_default(call_default_factory=True)
    return TypeAdapter(info.annotation).dump_python(value, mode="json")


def _section_class(annotation: Any) -> type[Section] | None:
    base, optional = _strip(annotation)
    if not optional and isinstance(base, type) and issubclass(base, Section):
        return base
    return None


def _spec(path: str, info: FieldInfo) -> FieldSpec:
    base, optional = _strip(info.annotation)
    origin = typing.get_origin(base)
    common = {
        "path": path,
        "default": _default(info),
        "required": info.is_required(),
        "optional": optional,
        "help": " ".join((info.description or "").split()),
    }
    if base is bool:
        return FieldSpec(kind="bool", text_only=False, choices=(), **common)
    if origin is Literal:
        return FieldSpec(kind="choice", text_only=False, choices=typing.get_args(base), **common)
    if path in REGISTRY_CHOICES:
        return FieldSpec(kind="choice", text_only=False, choices=REGISTRY_CHOICES[path], **common)
    if origin is list:
        (item,) = typing.get_args(base)
        item, _ = _strip(item)
        if typing.get_origin(item) is Literal:
            choices = typing.get_args(item)
            return FieldSpec(kind="multi", text_only=False, choices=choices, **common)
    if _scalar(base):
        return FieldSpec(kind="text", text_only=base is str, choices=(), **common)
    return FieldSpec(kind="yaml", text_only=False, choices=(), **common)


def _walk(cls: type[BaseModel], prefix: str) -> list[FieldSpec]:
    out: list[FieldSpec] = []
    for name, info in cls.model_fields.items():
        path = f"{prefix}.{name}" if prefix else name
        nested = _section_class(info.annotation)
        if nested is not None:
            out += _walk(nested, path)
        elif prefix:
            out.append(_spec(path, info))
        else:  # an optional top-level section (serval): one YAML box in a tab of its own
            out.append(_spec(f"{path}.{path}", info))
    return out


def form_fields() -> list[FieldSpec]:
    """Every editable leaf of ``RunConfig``, in schema order."""
    return _walk(RunConfig, "")


def grouped(specs: list[FieldSpec]) -> list[FieldSpec]:
    """The fields in the form's order: by tab (section), then by nested group, each in schema
    order (a nested section declared between two fields comes after the tab's own fields)."""
    groups: dict[tuple[str, str], list[FieldSpec]] = {}
    for s in specs:
        groups.setdefault((s.section, s.group), []).append(s)
    sections = list(dict.fromkeys(s.section for s in specs))
    keys = sorted(groups, key=lambda k: (sections.index(k[0]), k[1] != k[0]))
    return [s for k in keys for s in groups[k]]


def config_path(spec: FieldSpec) -> list[str]:
    """The key path in the YAML tree (``serval.serval`` -- the optional section's box -- is
    ``serval``)."""
    parts = spec.path.split(".")
    if len(parts) == 2 and parts[0] == parts[1]:
        return parts[:1]
    return parts


def section_doc(cls_path: str) -> str:
    """The docstring of the section at ``cls_path`` (``method.lora``), its help line."""
    cls: Any = RunConfig
    for part in cls_path.split("."):
        nested = (
            _section_class(cls.model_fields[part].annotation) if part in cls.model_fields else None
        )
        if nested is None:
            return ""
        cls = nested
    return (cls.__doc__ or "").strip().splitlines()[0]


# ---- values <-> tree --------------------------------------------------------------------------
def _yaml_text(value: Any) -> str:
    if value is None:
        return ""
    if not isinstance(value, list | dict):
        return _scalar_text(value)
    return yaml.safe_dump(value, sort_keys=False, allow_unicode=True, default_flow_style=False)


def _scalar_text(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, str):
        return value
    if isinstance(value, list | tuple | dict):
        return yaml.safe_dump(value, default_flow_style=True).strip()
    return yaml.safe_dump(value).removesuffix("\n...\n").strip()


def widget_value(spec: FieldSpec, value: Any) -> Any:
    """A config value as its widget shows it."""
    if spec.kind == "bool":
        return bool(value)
    if spec.kind == "choice":
        return NONE if value is None else value
    if spec.kind == "multi":
        return list(value or [])
    if spec.kind == "yaml":
        return _yaml_text(value)
    return _scalar_text(value)


def parse_widget(spec: FieldSpec, shown: Any) -> Any:
    """A widget's value as config data; text is read as YAML like a CLI override's value.

    Raises:
        ConfigError: ``<path>: invalid YAML (...)`` for a box that does not parse.
    """
    if spec.kind == "bool":
        return bool(shown)
    if spec.kind == "choice":
        return None if shown in (NONE, None) else shown
    if spec.kind == "multi":
        return list(shown or [])
    text = "" if shown is None else str(shown)
    if not text.strip():
        if spec.kind == "yaml" or spec.optional:
            return None if spec.optional or spec.default is None else spec.default
        return text
    if spec.text_only:
        return text
    try:
        value = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        line = f" at line {mark.line + 1}" if mark is not None else ""
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        raise ConfigError(
            f"{'.'.join(config_path(spec))}: invalid YAML{line} ({problem})"
        ) from None
    if isinstance(value, str) and spec.kind == "text":
        try:  # YAML 1.1 reads 1e-4 (no dot) as a string; the number is meant
            return float(value) if "e" in value.lower() else value
        except ValueError:
            return value
    return value


def _lookup(tree: Any, parts: list[str]) -> tuple[bool, Any]:
    node = tree
    for part in parts:
        if not isinstance(node, dict) or part not in node:
            return False, None
        node = node[part]
    return True, node


def _given_paths(tree: dict[str, Any], specs: list[FieldSpec]) -> set[str]:
    return {s.path for s in specs if _lookup(tree, config_path(s))[0]}


def values_from_tree(tree: dict[str, Any], specs: list[FieldSpec]) -> tuple[list[Any], set[str]]:
    """Widget values for a config tree (a recipe's YAML), and the paths the tree sets."""
    values = []
    for s in specs:
        found, value = _lookup(tree, config_path(s))
        values.append(widget_value(s, value if found else s.default))
    return values, _given_paths(tree, specs)


def tree_from_values(
    specs: list[FieldSpec], values: list[Any], given: set[str] | frozenset[str] = frozenset()
) -> tuple[dict[str, Any], list[str]]:
    """The YAML tree the form describes, and the boxes that do not parse.

    A field is written when it differs from the schema default, is required, or was set by the
    recipe the form started from (``given``), so the YAML reads like a recipe.
    """
    tree: dict[str, Any] = {}
    bad: list[str] = []
    for s, shown in zip(specs, values):
        try:
            value = parse_widget(s, shown)
        except ConfigError as exc:
            bad.append(str(exc))
            continue
        if not s.required and s.path not in given and value == s.default:
            continue
        if s.kind == "yaml" and value is None and s.path not in given:
            continue
        node = tree
        parts = config_path(s)
        for part in parts[:-1]:
            node = node.setdefault(part, {})
        node[parts[-1]] = value
    return tree, bad


def dump_tree(tree: dict[str, Any]) -> str:
    """The form's YAML (what the download button saves and ``tunesmith train`` reads)."""
    return yaml.safe_dump(tree, sort_keys=False, allow_unicode=True)


def check_tree(tree: dict[str, Any]) -> list[str]:
    """``tunesmith validate``'s error lines for the tree (empty: it is valid)."""
    from tunesmith.config.load import load_config

    try:
        load_config(tree=tree)
    except ConfigError as exc:
        return [line for line in str(exc).splitlines() if line.strip()]
    return []


def errors_by_field(
    lines: list[str], specs: list[FieldSpec]
) -> tuple[dict[str, list[str]], list[str]]:
    """Place each ``dotted.path: message`` line at the field it names.

    A line naming a path inside a YAML box (``data.datasets.0.path``) goes to that box; one
    naming a whole section (``data``: a rule between its fields) to no field.

    Returns:
        ``(field path -> its lines, lines that belong to no single field)``.
    """
    by_key = {".".join(config_path(s)): s.path for s in specs}
    placed: dict[str, list[str]] = {}
    loose: list[str] = []
    for line in lines:
        dotted = line.split(": ", 1)[0].strip()
        parts = dotted.split(".")
        target = None
        for n in range(len(parts), 0, -1):
            target = by_key.get(".".join(parts[:n]))
            if target is not None:
                break
        if target is None:
            loose.append(line)
        else:
            placed.setdefault(target, []).append(line)
    return placed, loose

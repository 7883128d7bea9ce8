"""Setting a route's purpose threshold in a policy file without touching anything else
(``tokenward calibrate --write``): the file is edited as text at the positions PyYAML's
composer reports, so comments, key order, quoting and layout stay as they were."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import yaml

__all__ = ["PolicyEditError", "patch_threshold", "snippet", "write_threshold"]


class PolicyEditError(Exception):
    """The policy file cannot be edited this way (the message says why)."""


def _pairs(node: yaml.Node) -> list[tuple[yaml.Node, yaml.Node]]:
    return list(node.value) if isinstance(node, yaml.MappingNode) else []


def _get(node: yaml.Node, key: str) -> tuple[yaml.Node, yaml.Node] | None:
    return next(((k, v) for k, v in _pairs(node) if isinstance(k, yaml.ScalarNode) and k.value == key), None)


def patch_threshold(text: str, route: str, key: str, value: float) -> str:
    """The policy text with ``routes[path=route].purpose.<key>`` set to ``value``; the rest
    of the text (comments, order, quoting, layout) is unchanged."""
    root = yaml.compose(text)
    routes = _get(root, "routes") if root is not None else None
    if routes is None or not isinstance(routes[1], yaml.SequenceNode):
        raise PolicyEditError("the policy file has no routes list: add the route to it first")
    item = next(
        (r for r in routes[1].value if (p := _get(r, "path")) is not None and p[1].value == route), None
    )  # fmt: skip
    if item is None:
        raise PolicyEditError(f"route {route} is not in the policy file's routes")
    purpose = _get(item, "purpose")
    if purpose is None or not isinstance(purpose[1], yaml.MappingNode):
        raise PolicyEditError(f"route {route} has no purpose mapping in the policy file")
    node = purpose[1]
    if not purpose[0].end_mark.index <= node.start_mark.index <= item.end_mark.index:
        raise PolicyEditError(f"the purpose of route {route} is a YAML alias: edit the anchored mapping by hand")
    formatted = f"{value:.3f}"
    existing = _get(node, key)
    if existing is not None:
        v = existing[1]
        if not isinstance(v, yaml.ScalarNode):
            raise PolicyEditError(f"{key} of route {route} is not a number")
        return text[: v.start_mark.index] + formatted + text[v.end_mark.index :]
    if node.flow_style:
        end = text.rindex("}", node.start_mark.index, node.end_mark.index)
        at = len(text[:end].rstrip())
        return text[:at] + f", {key}: {formatted}" + text[at:]
    first = node.value[0][0].start_mark
    line_start = text.rfind("\n", 0, first.index) + 1
    if text[line_start : first.index].strip(" "):
        raise PolicyEditError(f"the purpose of route {route} is laid out in a way this edit does not handle")
    indent = " " * first.column
    return text[: first.index] + f"{key}: {formatted}\n{indent}" + text[first.index :]


def write_threshold(path: Path, route: str, key: str, value: float) -> None:
    """Edit the file in place (atomically), after checking the result loads with the new value."""
    from ..policy import PolicyError, load_policy

    text = path.read_text()
    try:
        patched = patch_threshold(text, route, key, value)
    except yaml.YAMLError as exc:
        raise PolicyEditError(f"{path}: not valid YAML: {exc}") from None
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w") as fh:
            fh.write(patched)
        try:
            loaded = load_policy(tmp)
        except PolicyError as exc:
            raise PolicyEditError(f"the edited policy would not load: {exc}") from None
        r = next((r for r in loaded.routes if r.path == route), None)
        if r is None or r.purpose is None or abs(getattr(r.purpose, key) - value) > 1e-9:
            raise PolicyEditError(f"the edit did not set {key} of route {route}: edit the file by hand")
        os.chmod(tmp, path.stat().st_mode & 0o7777)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def snippet(route: str, values: dict[str, float]) -> str:
    """The settings as YAML to paste into the policy by hand."""
    keys = "\n".join(f"      {key}: {value:.3f}" for key, value in values.items())
    return f"routes:\n  - path: {route}\n    purpose:\n{keys}"

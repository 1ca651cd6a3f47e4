"""Convert a UI-format ComfyUI workflow (the `nodes` and `links` arrays the front end saves) to the API format the
server executes (`{"id": {"class_type": ..., "inputs": {...}}}`, a link being `[origin_id, origin_slot]`).

Widget values are stored by position: one per widget input in the node's required-then-optional input order
(linked widget inputs keep their slot), plus the hidden widgets the front end adds after a value control
(`control_after_generate` on INT: one, on COMBO: two). Front-end-only nodes are resolved away: Notes are dropped,
Reroutes and bypassed nodes pass their input through, a PrimitiveNode's value replaces its link.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

WIDGET_TYPES = {"INT", "FLOAT", "STRING", "BOOLEAN", "COMBO"}
SEED_INPUT_NAMES = {"seed", "noise_seed"}  # the front end gives these a value control even without the flag
NOTE_TYPES = {"Note", "MarkdownNote"}
MODE_MUTED = 2
MODE_BYPASSED = 4


class WorkflowConversionError(ValueError):
    """The UI workflow cannot be expressed for the server's node definitions."""


@dataclass(frozen=True)
class Link:
    origin_id: int
    origin_slot: int
    type: str


def ui_to_api(workflow: dict[str, Any], object_info: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """API-format prompt for `workflow`, with node definitions from the server's `/object_info`."""
    nodes = {node["id"]: node for node in workflow["nodes"]}
    links = parse_links(workflow.get("links", []))
    prompt: dict[str, dict[str, Any]] = {}
    for node in nodes.values():
        if node["type"] in NOTE_TYPES | {"Reroute", "PrimitiveNode"} or node.get("mode") in (MODE_MUTED, MODE_BYPASSED):
            continue
        info = object_info.get(node["type"])
        if info is None:
            raise WorkflowConversionError(f"node {node['id']}: type {node['type']!r} is not installed on the server")
        inputs = widget_values(node, info)
        for slot in node.get("inputs", []):
            if slot.get("link") is None:
                continue
            source = resolve_source(slot["link"], nodes, links)
            if source is not None:
                inputs[slot["name"]] = source
        prompt[str(node["id"])] = {"class_type": node["type"], "inputs": inputs, "_meta": {"title": node.get("title", node["type"])}}
    return prompt


def parse_links(raw_links: list[Any]) -> dict[int, Link]:
    """Links by id, from either the array form `[id, origin, slot, target, slot, type]` or the object form."""
    links = {}
    for raw in raw_links:
        if isinstance(raw, dict):
            links[raw["id"]] = Link(raw["origin_id"], raw["origin_slot"], raw.get("type", "*"))
        else:
            link_id, origin_id, origin_slot, _target_id, _target_slot, link_type = raw[:6]
            links[link_id] = Link(origin_id, origin_slot, link_type)
    return links


def widget_inputs(info: dict[str, Any]) -> list[tuple[str, int]]:
    """(name, number of hidden control widgets after it) for each widget input, in the front end's order."""
    order = info.get("input_order") or {section: list(specs) for section, specs in info["input"].items()}
    widgets = []
    for section in ("required", "optional"):
        for name in order.get(section, []):
            spec = info["input"][section][name]
            kind = "COMBO" if isinstance(spec[0], list) else spec[0]
            options = spec[1] if len(spec) > 1 and isinstance(spec[1], dict) else {}
            if kind not in WIDGET_TYPES or options.get("forceInput"):
                continue
            controlled = options.get("control_after_generate") or (kind == "INT" and name in SEED_INPUT_NAMES)
            widgets.append((name, (2 if kind == "COMBO" else 1) if controlled else 0))
    return widgets


def widget_values(node: dict[str, Any], info: dict[str, Any]) -> dict[str, Any]:
    """Input values held by the node's widgets, by input name."""
    raw = node.get("widgets_values") or []
    widgets = widget_inputs(info)
    if isinstance(raw, dict):
        return {name: raw[name] for name, _ in widgets if name in raw}
    values, position = {}, 0
    for name, controls in widgets:
        if position >= len(raw):
            raise WorkflowConversionError(
                f"node {node['id']} ({node['type']}) has {len(raw)} widget values; "
                f"expected one for input {name!r} at position {position}"
            )
        values[name] = raw[position]
        position += 1 + controls
    return values


def resolve_source(link_id: int, nodes: dict[int, dict[str, Any]], links: dict[int, Link]) -> Any:
    """`[origin_id, slot]` feeding a link after skipping Reroutes and bypassed nodes, a PrimitiveNode's value,
    or None when nothing executable feeds it."""
    link = links.get(link_id)
    if link is None:
        raise WorkflowConversionError(f"link {link_id} is used by a node but missing from the links array")
    origin = nodes.get(link.origin_id)
    if origin is None:
        raise WorkflowConversionError(f"link {link_id} starts at node {link.origin_id}, which does not exist")
    if origin["type"] == "PrimitiveNode":
        return origin["widgets_values"][0]
    if origin["type"] == "Reroute":
        upstream = origin["inputs"][0].get("link")
        return None if upstream is None else resolve_source(upstream, nodes, links)
    if origin.get("mode") == MODE_MUTED:
        return None
    if origin.get("mode") == MODE_BYPASSED:
        for slot in origin.get("inputs", []):
            if slot.get("link") is not None and slot.get("type") == link.type:
                return resolve_source(slot["link"], nodes, links)
        return None
    return [str(link.origin_id), link.origin_slot]

"""ui_to_api on small hand-written UI graphs against a fake /object_info."""

import pytest
from ui_to_api import WorkflowConversionError, ui_to_api

OBJECT_INFO = {
    "Source": {
        "input": {"required": {"count": ["INT", {"default": 1}]}},
        "input_order": {"required": ["count"]},
    },
    "Sampler": {
        "input": {
            "required": {
                "model": ["MODEL"],
                "seed": ["INT", {"control_after_generate": True}],
                "mode": [["fast", "slow"], {"control_after_generate": True}],
                "steps": ["INT", {"default": 4}],
                "scale": ["FLOAT", {"forceInput": True}],
            },
            "optional": {"note": ["STRING", {"multiline": True}], "mask": ["MASK"]},
        },
        "input_order": {"required": ["model", "seed", "mode", "steps", "scale"], "optional": ["note", "mask"]},
    },
    "Legacy": {"input": {"required": {"noise_seed": ["INT", {}], "cfg": ["FLOAT", {}]}}},
}


def node(node_id, node_type, widgets_values=None, inputs=(), mode=0):
    return {"id": node_id, "type": node_type, "mode": mode, "inputs": list(inputs), "widgets_values": widgets_values}


def slot(name, link, slot_type="*"):
    return {"name": name, "type": slot_type, "link": link}


def test_widgets_map_by_position_with_value_controls_and_linked_widget_slots():
    workflow = {
        "nodes": [
            node(1, "Source", [3]),
            node(2, "Sampler", [42, "randomize", "slow", "increment", "", 8, "a note"],
                 [slot("model", 1, "MODEL"), slot("steps", 2, "INT"), slot("scale", None, "FLOAT")]),
        ],
        "links": [[1, 1, 0, 2, 0, "MODEL"], [2, 1, 0, 2, 3, "INT"]],
    }
    prompt = ui_to_api(workflow, OBJECT_INFO)
    assert prompt["1"] == {"class_type": "Source", "inputs": {"count": 3}, "_meta": {"title": "Source"}}
    assert prompt["2"]["inputs"] == {
        "model": ["1", 0], "seed": 42, "mode": "slow", "steps": ["1", 0], "note": "a note",
    }


def test_seed_named_int_gets_a_value_control_without_the_flag():
    workflow = {"nodes": [node(5, "Legacy", [7, "fixed", 2.5])], "links": []}
    assert ui_to_api(workflow, OBJECT_INFO)["5"]["inputs"] == {"noise_seed": 7, "cfg": 2.5}


def test_widget_values_saved_as_a_mapping_are_read_by_name():
    workflow = {"nodes": [node(5, "Legacy", {"cfg": 1.5, "noise_seed": 9, "unrelated": 0})], "links": []}
    assert ui_to_api(workflow, OBJECT_INFO)["5"]["inputs"] == {"noise_seed": 9, "cfg": 1.5}


def test_front_end_only_nodes_are_resolved_away():
    workflow = {
        "nodes": [
            node(1, "Source", [1]),
            node(2, "Reroute", None, [slot("", 1)]),
            node(3, "Source", [2], [slot("count", 2, "MODEL")], mode=4),  # bypassed: passes its MODEL through
            node(4, "PrimitiveNode", [11, "fixed"]),
            node(5, "Sampler", [0, "fixed", "fast", "fixed", "", 4, ""],
                 [slot("model", 3, "MODEL"), slot("steps", 4, "INT")]),
            node(6, "Note", ["just text"]),
            node(7, "Source", [5], mode=2),  # muted
        ],
        "links": [
            {"id": 1, "origin_id": 1, "origin_slot": 0, "target_id": 2, "target_slot": 0, "type": "*"},
            {"id": 2, "origin_id": 2, "origin_slot": 0, "target_id": 3, "target_slot": 0, "type": "MODEL"},
            {"id": 3, "origin_id": 3, "origin_slot": 0, "target_id": 5, "target_slot": 0, "type": "MODEL"},
            {"id": 4, "origin_id": 4, "origin_slot": 0, "target_id": 5, "target_slot": 3, "type": "INT"},
        ],
    }
    prompt = ui_to_api(workflow, OBJECT_INFO)
    assert sorted(prompt) == ["1", "5"]
    assert prompt["5"]["inputs"]["model"] == ["1", 0]
    assert prompt["5"]["inputs"]["steps"] == 11


def test_unknown_node_type_is_named():
    with pytest.raises(WorkflowConversionError, match="'Missing' is not installed"):
        ui_to_api({"nodes": [node(1, "Missing", [])], "links": []}, OBJECT_INFO)


def test_too_few_widget_values_names_the_input():
    with pytest.raises(WorkflowConversionError, match="expected one for input 'cfg' at position 2"):
        ui_to_api({"nodes": [node(1, "Legacy", [1, "fixed"])], "links": []}, OBJECT_INFO)


def test_dangling_link_is_reported():
    workflow = {"nodes": [node(2, "Sampler", [0, "fixed", "fast", "fixed", "", 4, ""], [slot("model", 9)])], "links": []}
    with pytest.raises(WorkflowConversionError, match="link 9"):
        ui_to_api(workflow, OBJECT_INFO)

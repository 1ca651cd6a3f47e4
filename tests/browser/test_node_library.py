"""The pack's nodes are registered in the real front end under their display names and categories, and the Node
Library's search finds each of them by display name."""

from __future__ import annotations

from typing import Any

import pytest
from front_end import PACK_NAME, ConsoleLog, search_node_library
from pack_files import WORKFLOWS_DIR, load_workflow
from playwright.sync_api import Page, expect

pytestmark = pytest.mark.browser


@pytest.fixture(scope="module")
def pack_definitions(object_info: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """The server's definitions of this pack's nodes; they include every pack node the bundled workflows use."""
    definitions = {
        node_id: info for node_id, info in object_info.items() if info.get("python_module") == f"custom_nodes.{PACK_NAME}"
    }
    used = {
        node["type"] for path in WORKFLOWS_DIR.glob("*.json") for node in load_workflow(path.stem)["nodes"]
        if node["type"].startswith("EchoTorrent")
    }
    assert used and used <= set(definitions)
    return definitions


def test_pack_nodes_are_registered_with_display_names(
    app_page: tuple[Page, ConsoleLog], pack_definitions: dict[str, dict[str, Any]]
):
    page, console = app_page
    registered = page.evaluate(
        "ids => Object.fromEntries(ids.map(id => [id, [LiteGraph.registered_node_types[id]?.title ?? null,"
        " LiteGraph.registered_node_types[id]?.category ?? null]]))",
        sorted(pack_definitions),
    )
    assert registered == {
        node_id: [info["display_name"], info["category"]] for node_id, info in pack_definitions.items()
    }
    assert console.pack_errors() == []


def test_node_library_search_finds_pack_nodes(
    app_page: tuple[Page, ConsoleLog], pack_definitions: dict[str, dict[str, Any]]
):
    page, console = app_page
    for info in pack_definitions.values():
        search_node_library(page, info["display_name"])
        expect(page.locator(".p-tree").get_by_text(info["display_name"], exact=True)).to_be_visible()
    assert console.pack_errors() == []

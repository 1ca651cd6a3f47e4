"""The bundled workflows, opened from the real front end's template browser, load as saved: no missing node types,
no validation warnings, no errors from the pack, every node, widget value and link as in the file."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from comfy_server import ComfyServer
from front_end import (
    PACK_NAME, ConsoleLog, graph_nodes, open_overlays, open_template, opened_app, serialized_graph, wait_for_graph,
)
from pack_files import WORKFLOWS_DIR, load_workflow
from playwright.sync_api import Browser, Page
from ui_to_api import widget_values

pytestmark = pytest.mark.browser

WORKFLOWS = sorted(path.stem for path in WORKFLOWS_DIR.glob("*.json"))


class OpenedWorkflow:
    """A workflow file and the page that opened it, with the console log from before it was opened."""

    def __init__(self, name: str, page: Page, console: ConsoleLog, load_mark: int, screenshot: Path) -> None:
        self.name = name
        self.file = load_workflow(name)
        self.file_nodes = {node["id"]: node for node in self.file["nodes"]}
        self.page, self.console, self.load_mark, self.screenshot = page, console, load_mark, screenshot


@pytest.fixture(scope="module", params=WORKFLOWS)
def opened(
    request: pytest.FixtureRequest, browser: Browser, front_end_server: ComfyServer,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[OpenedWorkflow]:
    """The workflow opened from the template browser in a fresh app, photographed in the view it opens with."""
    name = request.param
    with opened_app(browser, front_end_server.url) as (page, console):
        load_mark = console.mark()
        open_template(page, PACK_NAME, name)
        wait_for_graph(page, sorted(node["id"] for node in load_workflow(name)["nodes"]))
        screenshot = tmp_path_factory.mktemp("screenshots") / f"{name}.png"
        page.screenshot(path=screenshot)
        print(f"screenshot of {name}: {screenshot}")
        yield OpenedWorkflow(name, page, console, load_mark, screenshot)


def test_opens_without_dialogs_or_pack_errors(opened: OpenedWorkflow):
    assert open_overlays(opened.page) == []  # missing node types dialog, workflow validation toasts
    assert opened.console.pack_errors(since=opened.load_mark) == []
    assert opened.screenshot.stat().st_size > 0


def test_every_node_is_known_with_its_mode(opened: OpenedWorkflow):
    nodes = graph_nodes(opened.page)
    assert {node_id: (node["type"], node["mode"]) for node_id, node in nodes.items()} == {
        node_id: (node["type"], node["mode"]) for node_id, node in opened.file_nodes.items()
    }
    assert [node_id for node_id, node in nodes.items() if node["has_errors"]] == []


def test_pack_widgets_hold_the_file_values(opened: OpenedWorkflow, object_info: dict[str, Any]):
    """Each EchoTorrent widget shows the value the file stores for it (read by name, as the server receives it),
    and saving gives back the file's widget values unchanged."""
    nodes = graph_nodes(opened.page)
    saved = {node["id"]: node for node in serialized_graph(opened.page)["nodes"]}
    pack_nodes = [node for node in opened.file_nodes.values() if node["type"].startswith("EchoTorrent")]
    assert pack_nodes
    for node in pack_nodes:
        assert node["type"] in object_info, f"node {node['id']}: {node['type']} is not defined on the server"
        expected = widget_values(node, object_info[node["type"]])
        shown = {widget["name"]: widget["value"] for widget in nodes[node["id"]]["widgets"]}
        assert {name: shown.get(name) for name in expected} == expected, f"node {node['id']} ({node['type']})"
        assert saved[node["id"]]["widgets_values"] == node["widgets_values"], f"node {node['id']} ({node['type']})"


def test_combo_values_are_among_the_options(opened: OpenedWorkflow):
    """Every combo widget (model files, input files, modes) holds one of its options on the prepared server."""
    for node_id, node in graph_nodes(opened.page).items():
        for widget in node["widgets"]:
            if widget["options"] is not None:
                assert widget["value"] in widget["options"], f"node {node_id} ({node['type']}) widget {widget['name']}"


def test_links_are_intact(opened: OpenedWorkflow):
    saved = serialized_graph(opened.page)
    assert sorted(saved["links"]) == sorted(opened.file["links"])
    for node in saved["nodes"]:
        file_node = opened.file_nodes[node["id"]]
        assert [(slot["name"], slot.get("link")) for slot in node.get("inputs", [])] == [
            (slot["name"], slot.get("link")) for slot in file_node.get("inputs", [])
        ]

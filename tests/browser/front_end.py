"""Driving the ComfyUI front end in Chromium: launch flags, app start-up, the console log and its attribution to
this pack, the template browser, the node library, and what the loaded graph holds."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from playwright.sync_api import Browser, ConsoleMessage, Page

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = (
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
    "--no-first-run", "--disable-sync", "--disable-quic",
    "--autoplay-policy=no-user-gesture-required",  # the stream player's sound starts without a click
)
PACK_NAME = "echotorrent"
APP_TIMEOUT_MS = 60_000
# The app is ready when the node definitions are registered and the start-up graph is on the canvas.
APP_READY = "() => window.app?.canvas && 'KSampler' in (window.LiteGraph?.registered_node_types ?? {}) && app.graph?.nodes.length > 0"
# What the front end made of each node: type, mode, error flag and every widget's name, value and combo options.
GRAPH_NODES = """() => app.graph.nodes.map(node => ({
    id: node.id, type: node.type, mode: node.mode, has_errors: !!node.has_errors,
    widgets: (node.widgets ?? []).map(w => ({
        name: w.name, value: w.value, options: Array.isArray(w.options?.values) ? w.options.values : null,
    })),
}))"""
OPEN_OVERLAYS = """() => [...document.querySelectorAll('.p-dialog, .p-toast-message')]
    .filter(element => element.offsetParent !== null || element.getClientRects().length > 0)
    .map(element => element.innerText.trim().slice(0, 500))"""


@dataclass(frozen=True)
class ConsoleEntry:
    kind: str  # console message type ("error", "warning", ...) or "pageerror" for an uncaught exception
    text: str
    url: str  # the script or resource the message came from ("" when unknown)


class ConsoleLog:
    """Every console message and uncaught exception of a page, in order."""

    def __init__(self, page: Page, server_url: str) -> None:
        self.entries: list[ConsoleEntry] = []
        self.server_host = urlsplit(server_url).netloc
        page.on("console", self._on_console)
        page.on("pageerror", lambda error: self.entries.append(ConsoleEntry("pageerror", str(error), "")))

    def _on_console(self, message: ConsoleMessage) -> None:
        self.entries.append(ConsoleEntry(message.type, message.text, message.location.get("url", "")))

    def mark(self) -> int:
        """A position in the log; `pack_errors(since=mark)` also counts every error logged after it."""
        return len(self.entries)

    def is_offline_lookup(self, entry: ConsoleEntry) -> bool:
        """A failed load from another host: the front end asks registries (api.comfy.org) about node packs, and the
        test machine is offline."""
        host = urlsplit(entry.url).netloc
        return entry.text.startswith("Failed to load resource") and bool(host) and host != self.server_host

    def pack_errors(self, since: int | None = None) -> list[ConsoleEntry]:
        """Errors that name this pack anywhere in the log, and every error after `since` (while a workflow of the
        pack loads), except failed lookups on other hosts."""
        errors = []
        for position, entry in enumerate(self.entries):
            if entry.kind not in ("error", "pageerror") or self.is_offline_lookup(entry):
                continue
            names_pack = PACK_NAME in (entry.text + entry.url).lower()
            if names_pack or (since is not None and position >= since):
                errors.append(entry)
        return errors


@contextmanager
def opened_app(browser: Browser, server_url: str) -> Iterator[tuple[Page, ConsoleLog]]:
    """A fresh browser context (empty storage) with the ComfyUI app open and ready, and the log of its console."""
    context = browser.new_context(viewport={"width": 1600, "height": 1000})
    try:
        page = context.new_page()
        console = ConsoleLog(page, server_url)
        page.goto(f"{server_url}/")
        page.wait_for_function(APP_READY, timeout=APP_TIMEOUT_MS)
        yield page, console
    finally:
        context.close()


def open_template(page: Page, module: str, name: str) -> None:
    """Open a custom-node template the way a user does: Templates sidebar, the pack's entry, the template's card."""
    page.get_by_role("button", name="Templates").click()
    page.get_by_text(module, exact=True).click()
    page.get_by_text(name, exact=True).first.click()


def wait_for_graph(page: Page, node_ids: list[int]) -> None:
    """Wait until the canvas holds exactly these node ids and the page's requests have settled."""
    page.wait_for_function(
        "ids => app.graph.nodes.length === ids.length && ids.every(id => app.graph.getNodeById(id))",
        arg=node_ids, timeout=APP_TIMEOUT_MS,
    )
    page.wait_for_load_state("networkidle")


def graph_nodes(page: Page) -> dict[int, dict[str, Any]]:
    return {node["id"]: node for node in page.evaluate(GRAPH_NODES)}


def serialized_graph(page: Page) -> dict[str, Any]:
    """The graph as the front end would save it."""
    return page.evaluate("() => app.graph.serialize()")


def open_overlays(page: Page) -> list[str]:
    """Text of every visible dialog (e.g. missing node types) and toast (e.g. workflow validation)."""
    return page.evaluate(OPEN_OVERLAYS)


def search_node_library(page: Page, query: str) -> None:
    """Type `query` into the Node Library sidebar's search box (opening the sidebar first if needed)."""
    search = page.get_by_placeholder("Search Nodes...")
    if not search.is_visible():
        page.get_by_role("button", name="Node Library (n)").click()
    search.fill(query)

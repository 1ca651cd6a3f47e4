"""Custom websocket events from a running node to the browser that queued its prompt, and a bounded log of the kept
ones so a page that reloads mid-run can catch up (GET /echotorrent/events).

Generic: the stream player sends its chunks through it; a live chart (e.g. training curves) can do the same with
its own channel. Every message is `{"seq", "kept", "channel", "kind", "prompt_id", "node", ...data}`, sent as the
event `<channel>.<kind>` (e.g. `echotorrent.stream.chunk`) to the client id that queued the prompt, as ComfyUI sends
its own progress. `seq` rises by one with every event of the process; events leave in `seq` order. A kept event is
also logged under its stream `(client, prompt, node, channel)` and numbered in it by `kept` (0: the stream's header,
e.g. the start event; then 1, 2, ... with no gap; None for an event not kept), so a page can tell that it missed one
(a websocket that was reconnecting) and fetch it. The header stays while the stream is one of the last
`MAX_STREAMS`; the others are dropped oldest first once the stream holds more than `MAX_STREAM_BYTES`.

Without a running ComfyUI server (nodes called directly, as in the unit tests) events go nowhere unless a transport
is installed with `set_transport`.
"""

from __future__ import annotations

import json
import sys
import threading
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from comfy_execution.utils import get_executing_context

ROUTE = "/echotorrent/events"
MAX_STREAMS = 4  # streams kept for catching up (a stream: one node's events of one prompt on one channel)
MAX_STREAM_BYTES = 24 * 2**20  # beyond it the oldest non-header events of a stream are dropped

Transport = Callable[[str, dict[str, Any], "str | None"], None]  # (event name, message, client id or None: all)


@dataclass
class _KeptStream:
    client_id: str | None
    prompt_id: str
    node: str
    channel: str
    header: dict[str, Any]
    events: list[tuple[dict[str, Any], int]] = field(default_factory=list)  # (message, JSON size in bytes)
    size: int = 0
    dropped: int = 0
    count: int = 1  # events kept so far, the header included: the next one's `kept` number

    def add(self, message: dict[str, Any]) -> None:
        size = len(json.dumps(message))
        self.events.append((message, size))
        self.size += size
        while self.size > MAX_STREAM_BYTES and len(self.events) > 1:
            _, old = self.events.pop(0)
            self.size -= old
            self.dropped += 1

    def as_json(self, after: int) -> dict[str, Any]:
        return {"prompt_id": self.prompt_id, "node": self.node, "channel": self.channel, "header": self.header,
                "dropped": self.dropped, "events": [message for message, _ in self.events if message["seq"] > after]}


class EventLog:
    """The kept events of the last `MAX_STREAMS` streams, safe to use from the execution thread and the server's."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._streams: OrderedDict[tuple, _KeptStream] = OrderedDict()
        self._seq = 0

    def record(self, client_id: str | None, message: dict[str, Any], keep: bool) -> dict[str, Any]:
        """`message` (channel, kind, prompt_id, node, data) stamped with the next `seq` and, when `keep`, logged
        and stamped with its `kept` number in its stream (else `kept` is None)."""
        with self._lock:
            self._seq += 1
            stamped = {"seq": self._seq, "kept": None, **message}
            if keep:
                self._keep(client_id, stamped)
            return stamped

    def _keep(self, client_id: str | None, message: dict[str, Any]) -> None:
        key = (client_id, message["prompt_id"], message["node"], message["channel"])
        stream = self._streams.get(key)
        if stream is None:
            message["kept"] = 0
            self._streams[key] = _KeptStream(client_id, *key[1:], header=message)
            while len(self._streams) > MAX_STREAMS:
                self._streams.popitem(last=False)
        else:
            message["kept"] = stream.count
            stream.count += 1
            stream.add(message)

    def streams(self, client_id: str | None, channel: str | None = None, after: int = 0) -> list[dict[str, Any]]:
        """The kept streams of `client_id` (oldest first), with their events after sequence number `after`."""
        with self._lock:
            return [stream.as_json(after) for stream in self._streams.values()
                    if stream.client_id == client_id and channel in (None, stream.channel)]


EVENT_LOG = EventLog()
_transport: Transport | None = None
# Held from stamping an event to handing it to the transport, so events leave in `seq` order although they are sent
# from several threads (PromptServer.send_sync only queues the message; it never blocks).
_SENDING = threading.Lock()


def _prompt_server() -> Any | None:
    """ComfyUI's running PromptServer, or None when no server was started in this process."""
    server_module = sys.modules.get("server")
    return getattr(getattr(server_module, "PromptServer", None), "instance", None)


def set_transport(transport: Transport | None) -> None:
    """Send events through `transport` instead of the PromptServer (None: back to the server)."""
    global _transport
    _transport = transport


@dataclass(frozen=True)
class NodeEventTarget:
    """Where a node's events go: its prompt, its node id and the client that queued the prompt. Resolved on the
    execution thread (`current()`), usable from any thread afterwards."""

    prompt_id: str
    node: str
    client_id: str | None

    @classmethod
    def current(cls) -> NodeEventTarget | None:
        """The node now executing (None outside a node's execution)."""
        context = get_executing_context()
        if context is None:
            return None
        return cls(str(context.prompt_id), str(context.node_id), getattr(_prompt_server(), "client_id", None))

    def send(self, channel: str, kind: str, data: dict[str, Any], keep: bool = False) -> dict[str, Any]:
        """Send `data` as event `<channel>.<kind>`; `keep` logs it for catching up after a reload. Returns the
        message sent."""
        fields = {"channel": channel, "kind": kind, "prompt_id": self.prompt_id, "node": self.node, **data}
        server = _prompt_server()
        with _SENDING:
            message = EVENT_LOG.record(self.client_id, fields, keep)
            if _transport is not None:
                _transport(f"{channel}.{kind}", message, self.client_id)
            elif server is not None:
                server.send_sync(f"{channel}.{kind}", message, self.client_id)
        return message


def send_node_event(channel: str, kind: str, data: dict[str, Any], keep: bool = False) -> dict[str, Any] | None:
    """Send `data` from the node now executing (see NodeEventTarget.send); None outside a node's execution."""
    target = NodeEventTarget.current()
    return None if target is None else target.send(channel, kind, data, keep)


def register_routes() -> bool:
    """Add GET /echotorrent/events?clientId=&channel=&after= to the running server (True when there is one)."""
    server = _prompt_server()
    if server is None:
        return False
    from aiohttp import web

    @server.routes.get(ROUTE)
    async def kept_events(request: web.Request) -> web.Response:
        query = request.rel_url.query
        try:
            after = int(query.get("after", "0"))
        except ValueError:
            return web.json_response({"error": "after must be an integer sequence number"}, status=400)
        streams = EVENT_LOG.streams(query.get("clientId") or None, query.get("channel") or None, after)
        return web.json_response({"streams": streams})

    return True


register_routes()

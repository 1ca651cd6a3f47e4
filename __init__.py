"""ComfyUI entry point of the EchoTorrent node pack (V3 node API).

ComfyUI imports this folder as a package named after it, so only relative imports are used here.
"""

import importlib.util
import os
import sys

from comfy_api.latest import ComfyExtension, io

if importlib.util.find_spec("echotorrent_core") is None:
    # A pack cloned into custom_nodes is not pip-installed: let the nodes import the core library beside them.
    sys.path.append(os.path.dirname(os.path.abspath(__file__)))

from .nodes import NODE_CLASSES  # noqa: E402  (needs the path above)

WEB_DIRECTORY = "./web"


class EchoTorrentExtension(ComfyExtension):
    """Registers the EchoTorrent nodes with ComfyUI."""

    async def get_node_list(self) -> list[type[io.ComfyNode]]:
        return list(NODE_CLASSES)


async def comfy_entrypoint() -> EchoTorrentExtension:
    return EchoTorrentExtension()

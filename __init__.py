"""ComfyUI entry point of the EchoTorrent node pack (V3 node API).

ComfyUI imports this folder as a package named after it, so only relative imports are used here.
"""

from comfy_api.latest import ComfyExtension, io

from .nodes import NODE_CLASSES

WEB_DIRECTORY = "./web"


class EchoTorrentExtension(ComfyExtension):
    """Registers the EchoTorrent nodes with ComfyUI."""

    async def get_node_list(self) -> list[type[io.ComfyNode]]:
        return list(NODE_CLASSES)


async def comfy_entrypoint() -> EchoTorrentExtension:
    return EchoTorrentExtension()

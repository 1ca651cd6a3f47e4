"""EchoTorrent ComfyUI nodes: one module per node family; NODE_CLASSES lists every node the pack registers."""

from comfy_api.latest import io

NODE_CLASSES: list[type[io.ComfyNode]] = []

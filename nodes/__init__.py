"""EchoTorrent ComfyUI nodes: one module per node family; NODE_CLASSES lists every node the pack registers."""

from comfy_api.latest import io

from .audio import AudioEncode
from .decode import RefinedVAEDecode
from .guidance import ACCGuidance
from .loaders import LoadEchoTorrent
from .sampler import EchoTorrentStreamingSampler
from .save_stream import SaveStream
from .stream import EchoTorrentStreamNode

NODE_CLASSES: list[type[io.ComfyNode]] = [
    LoadEchoTorrent, AudioEncode, ACCGuidance, EchoTorrentStreamingSampler, EchoTorrentStreamNode, SaveStream,
    RefinedVAEDecode,
]

"""Test-only ComfyUI nodes the integration harness installs beside the pack (custom_nodes/echotorrent_test_nodes).

- A CLIP_VISION_OUTPUT source: core CLIPVisionLoader only builds the real CLIP-H / CLIP-L / SigLIP sizes from fixed
  configurations (a random CLIP-H file would be ~1.3 GB and slow on the CPU), so the tests feed image-to-video
  checkpoints seeded random features of the CLIP-H shape, in the object core CLIP Vision Encode returns.
- A tensor saver: writes an IMAGE to output/<name>.safetensors, so tests compare decodes exactly (PNGs round to 8 bits).
"""

import os

import comfy.clip_vision
import folder_paths
import torch
from comfy_api.latest import ComfyExtension, io
from safetensors.torch import save_file

CLIP_H_TOKENS, CLIP_H_WIDTH, CLIP_H_PROJECTION = 257, 1280, 1024


class RandomClipVisionOutput(io.ComfyNode):
    @classmethod
    def define_schema(cls) -> io.Schema:
        return io.Schema(
            node_id="EchoTorrentTestClipVisionOutput", category="EchoTorrentTest",
            inputs=[io.Int.Input("seed", default=0, min=0, max=2**31 - 1)],
            outputs=[io.ClipVisionOutput.Output()],
        )

    @classmethod
    def execute(cls, seed: int) -> io.NodeOutput:
        generator = torch.Generator().manual_seed(seed)
        output = comfy.clip_vision.Output()
        output.last_hidden_state = torch.randn(1, CLIP_H_TOKENS, CLIP_H_WIDTH, generator=generator)
        output.penultimate_hidden_states = torch.randn(1, CLIP_H_TOKENS, CLIP_H_WIDTH, generator=generator)
        output.image_embeds = torch.randn(1, CLIP_H_PROJECTION, generator=generator)
        return io.NodeOutput(output)


class SaveTensors(io.ComfyNode):
    @classmethod
    def define_schema(cls) -> io.Schema:
        return io.Schema(
            node_id="EchoTorrentTestSaveTensors", category="EchoTorrentTest",
            inputs=[io.Image.Input("images"), io.String.Input("name", default="tensors")],
            outputs=[], is_output_node=True,
        )

    @classmethod
    def execute(cls, images: torch.Tensor, name: str) -> io.NodeOutput:
        save_file({"images": images.contiguous().cpu()}, os.path.join(folder_paths.get_output_directory(),
                                                                        f"{name}.safetensors"))
        return io.NodeOutput()


class TestNodes(ComfyExtension):
    async def get_node_list(self) -> list[type[io.ComfyNode]]:
        return [RandomClipVisionOutput, SaveTensors]


async def comfy_entrypoint() -> TestNodes:
    return TestNodes()

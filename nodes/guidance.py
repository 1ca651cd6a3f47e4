"""ACC Guidance: the guidance mode and scales, and the phased spatiotemporal schedule of the audio guidance."""

from __future__ import annotations

import torch
from comfy_api.latest import io

from echotorrent_core.guidance import GuidanceMode, GuidancePolicy
from echotorrent_core.guidance_inputs import parse_phases
from echotorrent_core.guidance_schedule import DEFAULT_PHASES, PhasedSpatiotemporalSchedule

from .types import Guidance, GuidanceType

DEFAULT_PHASE_TEXT = ",".join(f"{phase.end:g}:{phase.scale:g}" for phase in DEFAULT_PHASES)
_SCHEDULE_DEFAULTS = PhasedSpatiotemporalSchedule()


def mask_from_comfy(mask: torch.Tensor) -> torch.Tensor:
    """A ComfyUI MASK `[1, H, W]` (or `[H, W]`) -> `[H, W]` float32 in [0, 1]; a batch of several is an error."""
    if mask.ndim == 3 and mask.shape[0] == 1:
        mask = mask[0]
    if mask.ndim != 2:
        raise ValueError(f"expected one region mask (MASK [1, H, W]), got shape {tuple(mask.shape)}")
    return mask.float().clamp(0, 1).cpu()


class ACCGuidance(io.ComfyNode):
    """Builds the guidance policy of the streaming sampler (without this node: one pass, no guidance)."""

    @classmethod
    def define_schema(cls) -> io.Schema:
        return io.Schema(
            node_id="EchoTorrentACCGuidance",
            display_name="EchoTorrent ACC Guidance",
            category="EchoTorrent/guidance",
            description="Classifier-free guidance for the sampler, with the audio guidance shaped over denoising "
                        "phase, space (face / mouth region) and time (chunk seams, long rollouts).",
            inputs=[
                io.Combo.Input("mode", options=[mode.value for mode in GuidanceMode],
                               default=GuidanceMode.AUDIO_CFG.value,
                               tooltip="single: one pass per step (distilled models). audio_cfg: 2 passes, audio "
                                       "guidance. text_audio_cfg: 3 passes, text and audio guidance."),
                io.Float.Input("text_scale", default=5.0, min=0.0, max=20.0, step=0.1,
                               tooltip="Text guidance scale (text_audio_cfg only)."),
                io.Float.Input("audio_scale", default=4.0, min=0.0, max=20.0, step=0.1,
                               tooltip="Audio guidance scale; 1 = no audio guidance."),
                io.Boolean.Input("schedule", default=True,
                                 tooltip="Shape the audio guidance with the phased spatiotemporal schedule below; "
                                         "off = the full audio scale everywhere at every step."),
                io.String.Input("phases", default=DEFAULT_PHASE_TEXT,
                                tooltip="Audio guidance weight per denoising phase as end:weight pairs over "
                                        "progress 0 (noise) to 1 (clean), e.g. 0.5:1.0,0.75:0.75,1.0:0. "
                                        "A phase of weight 0 saves a network pass."),
                io.Float.Input("inside_weight", default=_SCHEDULE_DEFAULTS.inside_weight, min=0.0, max=4.0,
                               step=0.05, tooltip="Schedule weight inside the face / mouth region."),
                io.Float.Input("outside_weight", default=_SCHEDULE_DEFAULTS.outside_weight, min=0.0, max=4.0,
                               step=0.05, tooltip="Schedule weight outside the face / mouth region."),
                io.Mask.Input("region_mask", optional=True,
                              tooltip="Face / mouth region drawn on the reference image (white = inside); "
                                      "without it a soft ellipse over the lower centre of the frame is used."),
            ],
            outputs=[GuidanceType.Output("guidance", display_name="guidance",
                                         tooltip="Guidance policy for the streaming sampler.")],
        )

    @classmethod
    def execute(cls, mode: str, text_scale: float, audio_scale: float, schedule: bool, phases: str,
                inside_weight: float, outside_weight: float, region_mask: torch.Tensor | None = None) -> io.NodeOutput:
        shaped = None
        if schedule:
            shaped = PhasedSpatiotemporalSchedule(
                phases=parse_phases(phases), inside_weight=inside_weight, outside_weight=outside_weight
            )
        policy = GuidancePolicy(mode, text_scale, audio_scale, shaped)
        mask = None if region_mask is None else mask_from_comfy(region_mask)
        return io.NodeOutput(Guidance(policy, mask))

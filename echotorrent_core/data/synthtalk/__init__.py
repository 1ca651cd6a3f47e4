"""SynthTalk: a procedural talking-portrait data set, deterministic from a seed, at any size (64..256 px).

    from echotorrent_core.data.synthtalk import ClipSpec, render_clip, write_dataset
    clip = render_clip(ClipSpec(seed=3, domain="calm", size=128, split="train", seconds=None))
    clip.frames   # uint8 [T, H, W, 3] at 25 fps
    clip.audio    # float32 [S] at 16 kHz, S = T * 640
    clip.params   # {name: tensor}: mouth_open/mouth_width/mouth_round/teeth/blink/smile/brow [T], pose [T, 3],
                  # shift [T, 2], light [T, 3], phone [T] (int64 ids into PHONES), phone_segments [N, 3],
                  # identity [IDENTITY_DIM]; clip.metadata: voice, text, identity record, field descriptions
    write_dataset("DIR", clips=100, size=128, domain="calm", seed=0, split="train")  # -> DIR/index.json

Domains (`DOMAINS`): calm, expressive, singing, long (60-75 s). Splits: train / heldout; held-out clips use
identity ids >= `HELDOUT_IDENTITY_START` and, half of the time, held-out voices. Speech: piper (joe), festival
(slt HTS), flite (slt/rms/kal, awb held out), espeak-ng (4 variants, one held out), real LibriVox recordings
(held out) and a formant singer; phone timing from espeak-ng's events, pocketsphinx forced alignment, or exact.
Command line: `echotorrent data synthtalk --out DIR --clips N --size S --domain D [--seed --seconds --split]`.
Rendering is single-threaded numpy + PIL: about 260 frames/s of CPU time at 64-128 px, 95 at 256 px (one core);
a GPU does not help. Run several processes with different seeds to use more cores.
"""

from .clip import FPS, PARAM_FIELDS, Clip, ClipSpec, plan_clip, render_clip
from .domains import DOMAINS
from .identity import HELDOUT_IDENTITY_START, IDENTITY_DIM, is_heldout_identity, make_identity
from .phones import PHONE_ID, PHONES, VISEME_TARGETS
from .speech import SAMPLE_RATE
from .writer import write_dataset

__all__ = [
    "DOMAINS", "FPS", "HELDOUT_IDENTITY_START", "IDENTITY_DIM", "PARAM_FIELDS", "PHONES", "PHONE_ID", "SAMPLE_RATE",
    "VISEME_TARGETS", "Clip", "ClipSpec", "is_heldout_identity", "make_identity", "plan_clip", "render_clip",
    "write_dataset",
]

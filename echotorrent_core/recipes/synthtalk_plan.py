"""The default model's SynthTalk data: which clips (domains, splits, voices, lengths, seeds) and writing them,
in parallel processes, into one clip folder (resumable: finished clips are kept and skipped).

Clip k of a (domain, split) group has seed `seed + k`. The held-out split uses held-out identities and draws half
of its voices from the held-out voices; on top of that, `heldout_voices` adds clips that are certain to use a voice
never heard in training (the real LibriVox recordings, flite awb, espeak RP f4, the formant soprano), seeds
`seed + 1000 + i`. Long clips for drift go to a folder of their own (evaluation only, never cached for training).
"""

from __future__ import annotations

import multiprocessing
from dataclasses import dataclass
from pathlib import Path

from ..data.synthtalk.clip import ClipSpec, render_clip
from ..data.synthtalk.writer import read_index, write_clip, write_index

VOICED_SEED_OFFSET = 1000


@dataclass(frozen=True)
class DataPlan:
    """size: frame side; train / heldout: clips per domain; heldout_voices: (domain, voice) clips of held-out voices;
    seconds: clip length (None: each domain's range); drift_clips x drift_seconds: long held-out clips; seed."""

    size: int
    train: dict[str, int]
    heldout: dict[str, int]
    heldout_voices: tuple[tuple[str, str], ...]
    seconds: float | None
    drift_clips: int
    drift_seconds: float
    seed: int = 0

    def specs(self) -> list[ClipSpec]:
        """The clips of the training folder (train + held-out split)."""
        specs = [ClipSpec(seed=self.seed + k, domain=domain, size=self.size, split=split, seconds=self.seconds)
                 for split, groups in (("train", self.train), ("heldout", self.heldout))
                 for domain, count in groups.items() for k in range(count)]
        specs += [ClipSpec(seed=self.seed + VOICED_SEED_OFFSET + i, domain=domain, size=self.size, split="heldout",
                           seconds=self.seconds, voice=voice) for i, (domain, voice) in enumerate(self.heldout_voices)]
        return specs

    def drift_specs(self) -> list[ClipSpec]:
        """The long held-out clips (domain `long`) for identity drift."""
        return [ClipSpec(seed=self.seed + k, domain="long", size=self.size, split="heldout",
                         seconds=self.drift_seconds) for k in range(self.drift_clips)]


def _render_and_write(job: tuple[ClipSpec, str]) -> dict:
    spec, folder = job
    return write_clip(render_clip(spec), Path(folder))


def _single_thread() -> None:
    import torch

    torch.set_num_threads(1)


def write_clips(folder: str | Path, specs: list[ClipSpec], jobs: int = 1, log=print) -> Path:
    """Render and write every clip of `specs` not yet in `folder` (`jobs` processes); returns `index.json`."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    entries = read_index(folder)
    todo = [s for s in specs if not (s.clip_id in entries and (folder / entries[s.clip_id]["video"]).is_file()
                                     and (folder / entries[s.clip_id]["params"]).is_file())]
    log(f"{folder.name}: {len(specs) - len(todo)} of {len(specs)} clips already written, rendering {len(todo)}")
    work = [(spec, str(folder)) for spec in todo]
    if jobs > 1 and len(work) > 1:
        with multiprocessing.get_context("spawn").Pool(jobs, initializer=_single_thread) as pool:
            results = pool.imap_unordered(_render_and_write, work)
            _collect(results, folder, entries, len(work), log)
    else:
        _collect(map(_render_and_write, work), folder, entries, len(work), log)
    wanted = {s.clip_id for s in specs}
    return write_index(folder, {k: v for k, v in entries.items() if k in wanted})


def _collect(results, folder: Path, entries: dict, total: int, log) -> None:
    for done, entry in enumerate(results, 1):
        entries[entry["id"]] = entry
        write_index(folder, entries)
        if done % 20 == 0 or done == total:
            log(f"{folder.name}: {done}/{total} clips rendered")


DEFAULT_PLAN = DataPlan(
    size=128,
    train={"calm": 110, "expressive": 60, "singing": 40},
    heldout={"calm": 6, "expressive": 4, "singing": 3},
    heldout_voices=(("calm", "librivox"), ("expressive", "librivox"), ("calm", "flite-awb"),
                    ("calm", "espeak-rp-f4"), ("singing", "formant-soprano")),
    seconds=None,
    drift_clips=2,
    drift_seconds=60.0,
)
QUICK_PLAN = DataPlan(
    size=64,
    train={"calm": 2, "expressive": 1, "singing": 1},
    heldout={"calm": 1},
    heldout_voices=(("calm", "librivox"),),
    seconds=2.4,
    drift_clips=1,
    drift_seconds=3.0,
)

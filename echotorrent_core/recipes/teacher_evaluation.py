"""Evaluation of the bidirectional teacher beside the student (recipe step `evaluate_teacher`): the teacher samples
the same held-out clips (and drift clips) with the windowed bidirectional generator (`windowed.py`: many Euler
steps under CFG, a full-window VAE decode) and the videos go through exactly the student's instruments
(`evaluation.evaluate_generator`: sync expert and landmark sync vs the shuffled-audio control, identity, detail,
drift, speed).

How the teacher is sampled (`teacher_sampling`), read from the run's pinned stage configs:
- window: the teacher's training sample, `1 + latent_frames` latent frames = `1 + 4 latent_frames` video frames
  (teacher.toml: 6 -> 25 frames, ~1 s); one clean latent opens every window (`motion_frames` 1): the portrait in
  the first window, as in training, then the previous window's last decoded frame encoded alone (an image latent,
  like the portrait latent the teacher trained with; `windowed.py`). Each window adds `4 latent_frames` new frames.
- guidance: the policy the student was distilled under (student.toml `guidance_*`: audio CFG, s_a 4, 2 passes per
  step) and its trajectories' shift (`teacher_shift`).
- steps: `steps` Euler steps of Wan's many-step schedule (the recipe: `TEACHER_STEPS`; the student's ODE targets
  were `teacher_steps` = 12-step trajectories).
Passes per frame count every DiT pass (steps x guidance passes per window, no cache pass) over the frames written;
note one teacher pass attends over the whole window (7 latent frames), a student pass over one chunk (3) plus its
cache. Window seconds are the sampler's (denoising + decode; the portrait encode before the first window is
excluded, as the streaming sampler excludes its start), so the real-time factor compares like with like.

On GPUs the same code runs with `device` = CUDA (bf16 via `load_bundle`); the cost per window grows with steps x
guidance passes x (window tokens x dim^2 x layers + window tokens^2 x dim).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path

from tqdm import tqdm

from ..guidance import GuidancePolicy
from ..media import Mp4StreamWriter, load_audio_channels, load_image, normalize_loudness, to_mono_resampled
from ..metrics.measurements import EVAL_FPS
from ..metrics.sync_expert import SyncExpert
from ..pipeline import MAX_MUXED_CHANNELS, GenerationResult, ModelBundle, encode_audio_features, load_bundle
from ..training.config import load_config
from ..training.stages.student import StudentConfig
from ..training.stages.teacher import TeacherConfig
from ..windowed import WindowedBidirectionalSampler, WindowSettings
from .evaluation import Generate, evaluate_generator

TEACHER_STEPS = 20  # Euler steps of the recipe's teacher evaluation (InfiniteTalk's 40 cost twice as much)
QUICK_TEACHER_STEPS = 4  # the quick recipe's (its student's teacher_steps)
TEACHER_DRIFT_CLIPS = 1  # drift clips the teacher generates (of the recipe's 2 x 60 s; see the recipe's timing)
LOUDNESS_LUFS = -23.0  # what the student's generate_to_file normalises the speech to before encoding it


@dataclass(frozen=True)
class TeacherSampling:
    """The windowed sampler's settings and the guidance policy the teacher is sampled with."""

    window: WindowSettings
    guidance: GuidancePolicy

    def to_dict(self) -> dict:
        return {"window": asdict(self.window), "guidance": self.guidance.to_dict(),
                "passes_per_step": self.guidance.passes_per_step(0, self.window.steps),
                "new_frames_per_window": self.window.window_frames - self.window.motion_frames}


def teacher_sampling(teacher_config: str | Path, student_config: str | Path, steps: int,
                     overrides: dict[str, list[str]] | None = None, seed: int = 0) -> TeacherSampling:
    """The sampling of the module docstring from the teacher's and the student's TOML configs (with their `--set`
    overrides: {"teacher": [...], "student": [...]}); `steps` Euler steps."""
    overrides = overrides or {}
    teacher = load_config(teacher_config, TeacherConfig, overrides.get("teacher", [])).stage
    student = load_config(student_config, StudentConfig, overrides.get("student", [])).stage
    window = WindowSettings(window_frames=1 + 4 * teacher.latent_frames, motion_frames=1, steps=steps,
                            shift=student.teacher_shift, seed=seed)
    return TeacherSampling(window, student.guidance)


def windowed_to_file(bundle: ModelBundle, sampling: TeacherSampling, image: str | Path, audio: str | Path,
                     out_path: str | Path, height: int, width: int, fps: float = EVAL_FPS) -> GenerationResult:
    """Generate a video window by window with `bundle.dit` (a bidirectional DiT) into `out_path` with the original
    audio; the speech is heard as the student hears it (mono at the encoder's rate, normalised to -23 LUFS).
    `chunks` counts windows and `chunk_seconds` their seconds."""
    reference = load_image(image, height, width)
    original, original_rate = load_audio_channels(audio)
    rate = bundle.audio_encoder.cfg.sample_rate
    waveform = normalize_loudness(to_mono_resampled(original, original_rate, rate), rate, LOUDNESS_LUFS)
    features = encode_audio_features(bundle, waveform, fps)
    sampler = WindowedBidirectionalSampler(bundle.dit, bundle.vae, sampling.window, sampling.guidance)
    soundtrack = original if original.shape[0] <= MAX_MUXED_CHANNELS else original.mean(dim=0, keepdim=True)
    new_frames = sampling.window.window_frames - sampling.window.motion_frames
    seconds, passes, frames = [], 0, 0
    with Mp4StreamWriter(out_path, fps=fps, width=width, height=height, audio=soundtrack,
                         audio_rate=original_rate) as writer:
        windows = tqdm(sampler.stream(reference, features), total=-(-len(features) // new_frames),
                       desc=f"teacher {Path(out_path).stem}", leave=False)
        for window in windows:
            writer.write(window.frames)
            frames += window.frames.shape[0]
            seconds.append(window.seconds)
            passes += window.passes
    passes_per_step = passes / (sampling.window.steps * len(seconds))
    return GenerationResult(Path(out_path), frames, len(seconds), tuple(seconds), passes_per_step, passes)


def teacher_generator(bundle: ModelBundle, sampling: TeacherSampling) -> Generate:
    """The Generate (evaluation.py) of the windowed teacher."""
    return lambda portrait, audio, path, height, width: windowed_to_file(bundle, sampling, portrait, audio, path,
                                                                         height, width)


def evaluate_teacher(teacher: str | Path, vae: str | Path, audio_encoder: str | Path, sampling: TeacherSampling,
                     data: str | Path, drift: str | Path | None, out: str | Path, expert: SyncExpert,
                     limit: int | None = None, drift_limit: int | None = None) -> dict:
    """Load the teacher with the recipe's VAE and audio encoder and evaluate it as the student is evaluated
    (`evaluation.evaluate_generator`); the result adds `sampling` (TeacherSampling.to_dict) and the limits."""
    bundle = load_bundle(teacher, vae, audio_encoder)
    metrics = evaluate_generator(teacher_generator(bundle, sampling), EVAL_FPS, data, drift, out, expert, limit,
                                 drift_limit)
    return {"sampling": sampling.to_dict(), "limit": limit, "drift_limit": drift_limit} | metrics

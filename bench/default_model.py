"""Stream the default model (or any bundle) from the examples end to end and print a speed table.

    .venv/bin/python bench/default_model.py [--model BUNDLE] [--threads 2] [--seconds 12] [--out TABLE.md]
    .venv/bin/python bench/default_model.py --standin DIR   # write a random bundle of the default's shapes first

The run is `pipeline.generate_to_file` exactly as `echotorrent generate` does it (image load, loudness, audio
encoding, the streaming sampler, VAE decode, h264 + aac writing) at the bundle's size and stream settings
(`bundle.json`). Model load is timed separately. Per chunk: wall and process CPU time (CPU time is robust to other
jobs sharing the machine; wall is not), network passes (denoising + the cache-writing pass). The profile splits
the run's wall time into DiT passes, VAE decode, audio encoding and the rest (portrait encoding, mp4 writing,
glue) by timing those calls. Real-time factor = end-to-end wall / video duration (model load excluded).

`--standin DIR` writes seeded random weights in the default model's architecture, read from the recipe's configs
(`echotorrent_core/training/configs/{vae,teacher,audio_encoder,student}.toml`): same shapes, so the same speed,
but no trained behaviour. On a GPU the same script measures the bundle with `--device cuda` (bf16 DiT / VAE).
"""

from __future__ import annotations

import argparse
import json
import platform
import resource
import statistics
import sys
import tempfile
import time
import tomllib
from collections.abc import Callable
from datetime import date
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from echotorrent_core.cli import DEFAULT_BUNDLE, VAE_DTYPES  # noqa: E402
from echotorrent_core.pipeline import (  # noqa: E402
    BUNDLE_SETTINGS_FILE, bundle_defaults, bundle_paths, generate_to_file, load_bundle,
)
from echotorrent_core.precision import cpu_has_native_bf16  # noqa: E402
from echotorrent_core.streaming import StreamSettings  # noqa: E402

CONFIGS = ROOT / "echotorrent_core" / "training" / "configs"
EXAMPLES = ROOT / "example_inputs"
STREAM_FIELDS = ("chunk_frames", "window_frames", "sink_frames", "steps", "shift", "solver", "rope_layout")


def _stage(name: str) -> dict:
    return tomllib.loads((CONFIGS / f"{name}.toml").read_text())["stage"]


def write_standin_bundle(folder: str | Path, seed: int = 0) -> Path:
    """A random bundle with the default model's shapes (from the recipe configs) and its `bundle.json`."""
    import dataclasses

    from echotorrent_core.checkpoints.loaders import save_audio_encoder, save_dit, save_vae
    from echotorrent_core.config import VAEConfig, Wav2VecConfig, get_preset
    from echotorrent_core.models.dit import WanDiT
    from echotorrent_core.models.vae import WanVAE
    from echotorrent_core.models.wav2vec import AudioEncoder
    from echotorrent_core.training.stages.dit_models import dit_config

    vae_stage, teacher, audio_stage, student = (_stage(n) for n in ("vae", "teacher", "audio_encoder", "student"))
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(seed)
    vae_base = get_preset(vae_stage.get("preset", "tiny")).vae
    save_vae(WanVAE(VAEConfig.from_dict(vae_base.to_dict() | vae_stage.get("vae", {}))), folder / "vae.safetensors")
    audio_base = get_preset(audio_stage.get("preset", "tiny")).wav2vec
    encoder = AudioEncoder(Wav2VecConfig.from_dict(audio_base.to_dict() | audio_stage.get("wav2vec", {})))
    save_audio_encoder(encoder, folder / "audio_encoder.safetensors")
    with torch.no_grad():
        layers, width = encoder.encode(torch.zeros(16000), fps=25.0, num_frames=25).shape[-2:]
    cfg = dit_config(teacher.get("preset", "tiny"), teacher.get("dit", {}), teacher.get("audio", {}))
    cfg = dataclasses.replace(cfg, audio=dataclasses.replace(cfg.audio, encoder_layers=layers, audio_dim=width))
    save_dit(WanDiT(cfg), folder / "dit.safetensors")
    size = student["size"]
    stream = {k: student[k] for k in STREAM_FIELDS if k in student}
    defaults = {"height": size, "width": size, "fps": 25.0, "guidance": "single", **stream, "random_weights": True}
    (folder / BUNDLE_SETTINGS_FILE).write_text(json.dumps(defaults, indent=2) + "\n")
    return folder


def tiled_speech(source: Path, seconds: float, out: Path) -> Path:
    """`source` repeated to `seconds` (whole repeats, then cut) as 16-bit PCM wav `out`."""
    from echotorrent_core.media import load_audio_channels
    import wave

    audio, rate = load_audio_channels(source)
    mono = audio.mean(dim=0)
    repeats = int(seconds * rate // mono.shape[0]) + 1
    samples = mono.repeat(repeats)[: int(seconds * rate)]
    pcm = (samples.clamp(-1, 1) * 32767).round().to(torch.int16).numpy().tobytes()
    with wave.open(str(out), "wb") as handle:
        handle.setnchannels(1)
        handle.setsampwidth(2)
        handle.setframerate(rate)
        handle.writeframes(pcm)
    return out


class CallTimer:
    """Wraps callables (instance or class attributes) and sums their wall time by label."""

    def __init__(self) -> None:
        self.seconds: dict[str, float] = {}
        self.calls: dict[str, int] = {}
        self._restore: list[Callable[[], None]] = []

    def wrap(self, owner: object, name: str, label: str) -> None:
        original = getattr(owner, name)
        had_own = name in vars(owner)
        self.seconds.setdefault(label, 0.0)
        self.calls.setdefault(label, 0)

        def timed(*args, **kwargs):
            started = time.perf_counter()
            try:
                return original(*args, **kwargs)
            finally:
                self.seconds[label] += time.perf_counter() - started
                self.calls[label] += 1

        if isinstance(owner, type):
            setattr(owner, name, lambda self_, *a, **k: timed(self_, *a, **k))
        else:
            setattr(owner, name, timed)
        self._restore.append(lambda: setattr(owner, name, original) if had_own else delattr(owner, name))

    def restore(self) -> None:
        for undo in reversed(self._restore):
            undo()
        self._restore.clear()


def settings_from(defaults: dict, seed: int) -> StreamSettings:
    chosen = {k: defaults[k] for k in STREAM_FIELDS if k in defaults}
    return StreamSettings(fps=float(defaults.get("fps", 25.0)), seed=seed, **chosen)


def run(model: Path, image: Path, speech: Path, seconds: float, device: str,
        vae_dtype: torch.dtype | None = None) -> dict:
    """Load `model`, stream `speech` (tiled to `seconds`) with `image`; returns the measurements."""
    from echotorrent_core.guidance import GuidanceMode, GuidancePolicy
    from echotorrent_core.streaming import sampler as sampler_module

    paths, defaults = bundle_paths(model), bundle_defaults(model)
    rss_start = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    started, cpu_started = time.perf_counter(), time.process_time()
    bundle = load_bundle(paths["dit"], paths["vae"], paths["audio_encoder"], device=device, vae_dtype=vae_dtype)
    load_seconds, load_cpu = time.perf_counter() - started, time.process_time() - cpu_started
    settings = settings_from(defaults, seed=0)
    guidance = GuidancePolicy(mode=GuidanceMode(defaults.get("guidance", "single")))
    size = (int(defaults.get("height", 128)), int(defaults.get("width", 128)))

    timer = CallTimer()
    timer.wrap(bundle.dit, "forward_chunk", "DiT passes")
    timer.wrap(sampler_module.StreamingDecoder, "decode_chunk", "VAE decode")
    timer.wrap(bundle.audio_encoder, "encode", "audio encode")
    marks: list[tuple[float, float]] = []
    passes: list[int] = []

    def on_chunk(chunk, total: int) -> None:
        marks.append((time.perf_counter(), time.process_time()))
        passes.append(chunk.passes)

    with tempfile.TemporaryDirectory() as scratch:
        audio = tiled_speech(speech, seconds, Path(scratch) / "speech.wav")
        out = Path(scratch) / "bench.mp4"
        begin = (time.perf_counter(), time.process_time())
        try:
            result = generate_to_file(bundle, image, audio, out, *size, settings, guidance, on_chunk=on_chunk)
        finally:
            timer.restore()
        end = (time.perf_counter(), time.process_time())
        mp4_bytes = out.stat().st_size
    wall = end[0] - begin[0]
    walls = [b[0] - a[0] for a, b in zip([begin, *marks], marks)]
    cpus = [b[1] - a[1] for a, b in zip([begin, *marks], marks)]
    video_seconds = result.frames / settings.fps
    return {
        "model": str(model), "size": size, "settings": settings, "load_seconds": load_seconds, "load_cpu": load_cpu,
        "wall": wall, "cpu": end[1] - begin[1], "frames": result.frames, "chunks": result.chunks,
        "video_seconds": video_seconds, "first_chunk": walls[0], "chunk_walls": walls[1:], "chunk_cpus": cpus[1:],
        "first_chunk_cpu": cpus[0], "passes": passes, "profile": dict(timer.seconds), "calls": dict(timer.calls),
        "rss_load_mib": (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - rss_start) / 1024,
        "rss_peak_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, "mp4_bytes": mp4_bytes,
        "random_weights": bool(defaults.get("random_weights")),
        "dtypes": (next(bundle.dit.parameters()).dtype, next(bundle.vae.parameters()).dtype),
    }


def _p95(values: list[float]) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(0.95 * (len(ordered) - 1))))]


def table(m: dict, threads: int, note: str) -> str:
    """The measurements as a markdown table (plus the profile)."""
    walls, cpus, s = m["chunk_walls"], m["chunk_cpus"], m["settings"]
    frames_per_chunk = s.chunk_frames * 4
    rows = [
        ("bundle", f"`{m['model']}`" + (" (random weights, the default's shapes)" if m["random_weights"] else "")),
        ("output", f"{m['size'][1]}x{m['size'][0]}, {m['frames']} frames = {m['video_seconds']:.2f} s in "
                   f"{m['chunks']} chunks of {frames_per_chunk} frames"),
        ("stream settings", f"steps {s.steps}, chunk {s.chunk_frames}, window {s.window_frames}, sink "
                            f"{s.sink_frames}, solver {s.solver}"),
        ("threads", f"{threads} (torch.set_num_threads)"),
        ("weights", f"DiT {str(m['dtypes'][0]).removeprefix('torch.')}, VAE {str(m['dtypes'][1]).removeprefix('torch.')}"
                    f" (native bf16 on this CPU: {'yes' if cpu_has_native_bf16() else 'no'})"),
        ("model load (excluded below)", f"{m['load_seconds']:.2f} s wall, {m['load_cpu']:.2f} s CPU"),
        ("first-chunk latency", f"{m['first_chunk']:.3f} s wall ({m['first_chunk_cpu']:.3f} s CPU): inputs, audio "
                                "encoding, portrait encoding, decoder warm-up, chunk 1, mp4 write"),
        ("time per chunk (chunks 2..)", f"mean {statistics.mean(walls):.3f} s, p95 {_p95(walls):.3f} s wall" if walls
         else "n/a (one chunk)"),
        ("CPU time per chunk (chunks 2..)", f"mean {statistics.mean(cpus):.3f} s, p95 {_p95(cpus):.3f} s "
                                            f"(all threads; / {threads} = {statistics.mean(cpus) / threads:.3f} s "
                                            "on an idle machine)" if cpus else "n/a"),
        ("real-time factor (wall / video)", f"{m['wall'] / m['video_seconds']:.3f} ({m['wall']:.2f} s for "
                                            f"{m['video_seconds']:.2f} s)"),
        ("real-time factor by CPU time / threads", f"{m['cpu'] / threads / m['video_seconds']:.3f}"),
        ("fps (end to end)", f"{m['frames'] / m['wall']:.1f}"),
        ("DiT passes per chunk", f"{statistics.mean(m['passes']):g} ({s.steps} denoising + 1 cache write)"),
        ("memory", f"peak RSS {m['rss_peak_mib']:.0f} MiB (+{m['rss_load_mib']:.0f} MiB from model load and run)"),
    ]
    lines = ["| measure | value |", "| --- | --- |", *(f"| {k} | {v} |" for k, v in rows), ""]
    lines += ["| profile (share of end-to-end wall) | seconds | share | calls |", "| --- | --- | --- | --- |"]
    accounted = 0.0
    for label, seconds in m["profile"].items():
        accounted += seconds
        lines.append(f"| {label} | {seconds:.2f} | {seconds / m['wall']:.0%} | {m['calls'][label]} |")
    rest = m["wall"] - accounted
    lines.append(f"| rest (portrait encode, mp4 writing, inputs, glue) | {rest:.2f} | {rest / m['wall']:.0%} | |")
    lines += ["", note] if note else []
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default=None, help=f"bundle folder (default {DEFAULT_BUNDLE})")
    parser.add_argument("--standin", default=None, metavar="DIR",
                        help="write a random bundle of the default model's shapes to DIR and measure it")
    parser.add_argument("--image", default=str(EXAMPLES / "portrait.png"))
    parser.add_argument("--speech", default=str(EXAMPLES / "speech.wav"))
    parser.add_argument("--seconds", type=float, default=12.0, help="speech length (the example is repeated)")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--vae-dtype", choices=("auto", *VAE_DTYPES), default="auto",
                        help="the VAE's weights (auto: precision.default_vae_dtype, as echotorrent generate)")
    parser.add_argument("--note", default="", help="a line appended under the table (e.g. machine load)")
    parser.add_argument("--out", default=None, help="also write the table to this markdown file")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    if args.standin:
        model = write_standin_bundle(args.standin)
    else:
        model = Path(args.model) if args.model else DEFAULT_BUNDLE
        if not model.is_dir():
            raise SystemExit(f"no bundle at {model}: the default model is not shipped yet; pass --model or --standin")
    measured = run(model, Path(args.image), Path(args.speech), args.seconds, args.device,
                   VAE_DTYPES.get(args.vae_dtype))
    shown = [a for a in (argv if argv is not None else sys.argv[1:]) if a not in ("--note", args.note)]
    header = (f"# Default model streaming benchmark, {date.today().isoformat()}\n\n"
              f"`{' '.join(['bench/default_model.py', *shown])}` on "
              f"{platform.processor() or platform.machine()}, torch {torch.__version__}, image "
              f"`{Path(args.image).name}`, speech `{Path(args.speech).name}` repeated to {args.seconds:g} s.\n\n")
    report = header + table(measured, args.threads, args.note)
    print(report)
    if args.out:
        Path(args.out).write_text(report)
    return 0


if __name__ == "__main__":
    sys.exit(main())

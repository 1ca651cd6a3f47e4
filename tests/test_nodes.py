"""The EchoTorrent nodes called directly with ComfyUI-shaped inputs on a tiny random model.

ComfyUI's own modules (folder_paths, comfy.utils, comfy.model_management, comfy_api) are imported from the
ComfyUI tree the integration tests use; the pack is loaded as a package the way ComfyUI loads custom nodes.
"""

from __future__ import annotations

import gc
import importlib.util
import logging
import os
import shutil
import subprocess
import sys
import weakref
from pathlib import Path
from types import ModuleType

import pytest
import torch

from echotorrent_core.checkpoints.errors import CheckpointError
from echotorrent_core.checkpoints.refiner import save_decoder_refiner
from echotorrent_core.config import VAEConfig, get_preset
from echotorrent_core.guidance import GuidanceMode
from echotorrent_core.checkpoints.loaders import save_dit, save_vae
from echotorrent_core.models.dit import WanDiT
from echotorrent_core.models.vae import WanVAE
from echotorrent_core.random_bundle import write_random_bundle

REPO_ROOT = Path(__file__).resolve().parent.parent
PACK_MODULE = "echotorrent_pack"
DIT_FILE = "echotorrent_default_dit.safetensors"
VAE_FILE = "wan_2.1_vae.safetensors"
AUDIO_ENCODER_FILE = "echotorrent_default_wav2vec2.safetensors"
REFINER_FILE = "echotorrent_refiner.safetensors"
I2V_DIT_FILE = "echotorrent_i2v_dit.safetensors"
SIZE = 32
FPS = 25.0
TINY = get_preset("tiny")
# The tiny preset's VAE at the layout core ComfyUI builds for every Wan 2.1 VAE file (dim_mult 1,2,4,4, two residual
# blocks per level), so that core Load VAE reads the same file.
CORE_LOADABLE_VAE = VAEConfig(base_dim=8)


def _comfyui_dir() -> Path:
    path = Path(os.environ.get("COMFYUI_PATH") or REPO_ROOT / ".cache" / "ComfyUI")
    if not (path / "comfy_api" / "latest").is_dir():
        subprocess.run([sys.executable, str(REPO_ROOT / "scripts" / "setup_comfyui.py")], check=True)
    return path.resolve()


@pytest.fixture(scope="module")
def comfy() -> ModuleType:
    """ComfyUI's modules on the CPU, and the pack imported as the package `echotorrent_pack`."""
    sys.path.insert(0, str(_comfyui_dir()))
    import comfy.cli_args

    comfy.cli_args.args.cpu = True
    if PACK_MODULE not in sys.modules:
        spec = importlib.util.spec_from_file_location(
            PACK_MODULE, REPO_ROOT / "__init__.py", submodule_search_locations=[str(REPO_ROOT)]
        )
        module = importlib.util.module_from_spec(spec)
        sys.modules[PACK_MODULE] = module
        spec.loader.exec_module(module)
    import comfy.model_management
    import comfy.utils

    return comfy


@pytest.fixture(scope="module")
def pack(comfy) -> ModuleType:
    return importlib.import_module(f"{PACK_MODULE}.nodes")


@pytest.fixture(scope="module")
def models_dir(comfy, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A models folder with the tiny random networks under the names the workflows use, registered first."""
    import folder_paths

    importlib.import_module(f"{PACK_MODULE}.nodes.loaders")  # registers the echotorrent and wav2vec2 folders
    bundle = write_random_bundle(tmp_path_factory.mktemp("bundle"))
    root = tmp_path_factory.mktemp("models")
    for folder, source, name in (("echotorrent", "dit", DIT_FILE), ("wav2vec2", "audio_encoder", AUDIO_ENCODER_FILE)):
        (root / folder).mkdir(exist_ok=True)
        shutil.copy(bundle / f"{source}.safetensors", root / folder / name)
    (root / "vae").mkdir()
    for folder in ("echotorrent", "vae", "wav2vec2"):
        folder_paths.add_model_folder_path(folder, str(root / folder), is_default=True)
    torch.manual_seed(7)
    save_vae(WanVAE(CORE_LOADABLE_VAE), root / "vae" / VAE_FILE)
    save_decoder_refiner(WanVAE(CORE_LOADABLE_VAE), root / "vae" / REFINER_FILE)
    save_dit(WanDiT(get_preset("tiny-i2v").dit), root / "echotorrent" / I2V_DIT_FILE)
    return root


def _load(pack, refiner: str = "none", dit: str = DIT_FILE, vae: str = VAE_FILE):
    return pack.LoadEchoTorrent.execute(dit=dit, vae=vae, audio_encoder=AUDIO_ENCODER_FILE, refiner=refiner,
                                        dtype="auto", device="auto")[0]


@pytest.fixture(scope="module")
def model(pack, models_dir):
    return _load(pack, refiner=REFINER_FILE)


def test_loader_applies_an_audio_adapter_file_to_a_base_dit(pack, models_dir: Path) -> None:
    from dataclasses import replace

    from echotorrent_core.checkpoints.loaders import is_audio_key, load_dit, save_audio_adapter, save_dit
    from echotorrent_core.models.dit import WanDiT

    full, _ = load_dit(models_dir / "echotorrent" / DIT_FILE)
    base = WanDiT(replace(full.cfg, audio=None))
    base.load_state_dict({k: v for k, v in full.state_dict().items() if not is_audio_key(k)})
    save_dit(base, models_dir / "echotorrent" / "base_dit.safetensors")
    save_audio_adapter(full, models_dir / "echotorrent" / "audio_adapter.safetensors")
    [adapter_input] = [item for item in pack.LoadEchoTorrent.define_schema().inputs if item.id == "audio_adapter"]
    options = adapter_input.options
    assert options[0] == "none" and "audio_adapter.safetensors" in options
    with pytest.raises(CheckpointError, match="audio adapter"):
        _load(pack, dit="audio_adapter.safetensors")
    loaded = pack.LoadEchoTorrent.execute(dit="base_dit.safetensors", vae=VAE_FILE, audio_encoder=AUDIO_ENCODER_FILE,
                                          refiner="none", dtype="auto", device="auto",
                                          audio_adapter="audio_adapter.safetensors")[0]
    assert loaded.dit.cfg == full.cfg
    for key, value in full.state_dict().items():
        assert torch.equal(loaded.dit.state_dict()[key], value), key


def comfy_audio(seconds: float = 1.0, rate: int = 22050, channels: int = 2, batch: int = 1) -> dict:
    time = torch.arange(round(seconds * rate)) / rate
    tone = 0.3 * torch.sin(2 * torch.pi * 220 * time) * (1 + torch.sin(2 * torch.pi * 3 * time))
    return {"waveform": tone.repeat(batch, channels, 1), "sample_rate": rate}


def comfy_image(height: int = 40, width: int = 48, batch: int = 1) -> torch.Tensor:
    return torch.rand(batch, height, width, 3, generator=torch.Generator().manual_seed(1))


@pytest.fixture(scope="module")
def features(pack, model):
    return pack.AudioEncode.execute(model=model, audio=comfy_audio(), fps=FPS, normalize_loudness=True)


def _sample(pack, model, features, **overrides):
    inputs = dict(model=model, image=comfy_image(), audio_features=features, width=SIZE, height=SIZE, seed=3,
                  steps=2, shift=5.0, solver="few_step", chunk_frames=3, window_frames=6)
    return pack.EchoTorrentStreamingSampler.execute(**{**inputs, **overrides})


@pytest.fixture(scope="module")
def sampled(pack, model, features):
    return _sample(pack, model, features[0])


# Load EchoTorrent


def test_loader_returns_the_networks(model):
    assert model.refiner is not None and model.refiner is not model.vae
    assert model.dit.cfg == TINY.dit
    assert [Path(report.path).name for report in model.reports] == [DIT_FILE, VAE_FILE, AUDIO_ENCODER_FILE]
    assert model.device == torch.device("cpu")  # ComfyUI runs with --cpu here
    assert next(model.dit.parameters()).dtype == torch.float32


def test_loader_keeps_no_model_alive(pack, comfy, models_dir):
    """Nothing in the pack holds a loaded model: once ComfyUI drops the node output (and unloads it), it is freed."""
    loaded = _load(pack)
    pack.AudioEncode.execute(model=loaded, audio=comfy_audio(0.2), fps=FPS, normalize_loudness=False)
    networks = [weakref.ref(module) for module in (loaded.dit, loaded.vae, loaded.audio_encoder)]
    comfy.model_management.unload_all_models()
    del loaded
    gc.collect()
    assert [ref() for ref in networks] == [None, None, None]


def test_loader_puts_the_networks_under_model_management(pack, comfy, model, features):
    import comfy.model_patcher

    assert set(model.patchers) == {"dit", "vae", "audio_encoder", "refiner"}
    for role, network in (("dit", model.dit), ("vae", model.vae), ("audio_encoder", model.audio_encoder),
                          ("refiner", model.refiner)):
        patcher = model.patchers[role]
        assert isinstance(patcher, comfy.model_patcher.ModelPatcher) and patcher.model is network
        assert patcher.load_device == comfy.model_management.get_torch_device()
    comfy.model_management.unload_all_models()
    _sample(pack, model, features[0])
    loaded = {id(entry.model) for entry in comfy.model_management.current_loaded_models}
    assert {id(model.patchers["dit"]), id(model.patchers["vae"])} <= loaded  # loaded by the sampler like core models
    comfy.model_management.unload_all_models()
    assert not comfy.model_management.current_loaded_models


def test_loader_fingerprint_follows_the_files(pack, models_dir):
    inputs = dict(dit=DIT_FILE, vae=VAE_FILE, audio_encoder=AUDIO_ENCODER_FILE, refiner=REFINER_FILE, dtype="auto",
                  device="auto")
    before = pack.LoadEchoTorrent.fingerprint_inputs(**inputs)
    assert pack.LoadEchoTorrent.fingerprint_inputs(**inputs) == before
    path = models_dir / "vae" / REFINER_FILE
    stat = path.stat()
    os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns + 1_000_000))
    assert pack.LoadEchoTorrent.fingerprint_inputs(**inputs) != before
    assert pack.LoadEchoTorrent.fingerprint_inputs(**{**inputs, "dit": "gone.safetensors"}) != before


def test_loader_missing_file_names_file_and_folders(pack, models_dir):
    with pytest.raises(FileNotFoundError, match=r"DiT file 'missing_dit\.safetensors' was not found .*echotorrent"):
        _load(pack, dit="missing_dit.safetensors")


def test_loader_wrong_model_says_what_was_expected(pack, models_dir):
    shutil.copy(models_dir / "vae" / VAE_FILE, models_dir / "echotorrent" / "a_vae.safetensors")
    with pytest.raises(CheckpointError, match=r"DiT 'a_vae\.safetensors' could not be used: .*holds a Wan VAE.*"
                                              r"expected a Wan DiT"):
        _load(pack, dit="a_vae.safetensors")


def test_loader_lists_safetensors_files(pack, models_dir):
    (models_dir / "echotorrent" / "notes.txt").write_text("not a model")
    schema = pack.LoadEchoTorrent.define_schema()
    options = {item.id: item.options for item in schema.inputs if hasattr(item, "options")}
    assert DIT_FILE in options["dit"] and "notes.txt" not in options["dit"]
    assert options["refiner"][0] == "none" and REFINER_FILE in options["refiner"]
    assert AUDIO_ENCODER_FILE in options["audio_encoder"]


# Audio Encode


def test_audio_encode_shapes_and_passthrough(features):
    payload, frame_count = features
    audio_cfg = TINY.dit.audio
    assert frame_count == payload.num_frames == 25  # 1 s at 25 fps
    assert payload.features.shape == (25, audio_cfg.encoder_layers, audio_cfg.audio_dim)
    assert payload.fps == FPS
    assert payload.audio["sample_rate"] == 22050 and payload.audio["waveform"].shape == (1, 2, 22050)


def test_audio_encode_frame_count_follows_fps(pack, model):
    payload, frame_count = pack.AudioEncode.execute(model=model, audio=comfy_audio(0.5, rate=16000, channels=1),
                                                    fps=16.0, normalize_loudness=False)
    assert frame_count == 8 and payload.features.shape[0] == 8


def test_audio_encode_rejects_a_batch(pack, model):
    with pytest.raises(ValueError, match=r"one speech track .*\[1, channels, samples\].*\(2, 2, 22050\)"):
        pack.AudioEncode.execute(model=model, audio=comfy_audio(batch=2), fps=FPS, normalize_loudness=True)


def test_audio_encode_rejects_empty_audio(pack, model):
    with pytest.raises(ValueError, match="the AUDIO input is empty"):
        pack.AudioEncode.execute(model=model, audio=comfy_audio(seconds=0), fps=FPS, normalize_loudness=True)


# ACC Guidance


def test_guidance_builds_policy_and_mask(pack):
    mask = torch.zeros(1, 40, 48)
    mask[:, 20:, 12:36] = 1
    [guidance] = pack.ACCGuidance.execute(mode="text_audio_cfg", text_scale=4.0, audio_scale=3.0, schedule=True,
                                          phases="0.6:1,1:0.5", inside_weight=1.0, outside_weight=0.2,
                                          region_mask=mask)
    policy = guidance.policy
    assert (policy.mode, policy.text_scale, policy.audio_scale) == (GuidanceMode.TEXT_AUDIO_CFG, 4.0, 3.0)
    assert [(p.start, p.end, p.scale) for p in policy.schedule.phases] == [(0.0, 0.6, 1.0), (0.6, 1.0, 0.5)]
    assert policy.schedule.outside_weight == 0.2
    assert guidance.region_mask.shape == (40, 48)


def test_guidance_without_schedule(pack):
    [guidance] = pack.ACCGuidance.execute(mode="audio_cfg", text_scale=5.0, audio_scale=4.0, schedule=False,
                                          phases="garbage is ignored", inside_weight=1.0, outside_weight=0.3)
    assert guidance.policy.schedule is None and guidance.region_mask is None


def test_guidance_bad_phases_and_masks(pack):
    args = dict(mode="audio_cfg", text_scale=5.0, audio_scale=4.0, schedule=True, inside_weight=1.0,
                outside_weight=0.3)
    with pytest.raises(ValueError, match="is not 'end:scale'"):
        pack.ACCGuidance.execute(phases="0.5;1", **args)
    with pytest.raises(ValueError, match="one region mask"):
        pack.ACCGuidance.execute(phases="1:1", region_mask=torch.ones(2, 8, 8), **args)


# Streaming Sampler


def test_sampler_outputs(sampled, features):
    frames, audio, latent, fps = sampled
    payload = features[0]
    assert frames.shape == (payload.num_frames, SIZE, SIZE, 3) and frames.dtype == torch.float32
    assert 0 <= frames.min() and frames.max() <= 1
    assert audio is payload.audio
    assert fps == FPS
    chunks = 3  # 25 frames -> 7 latent frames -> 3 chunks of 3
    assert latent["samples"].shape == (1, TINY.vae.z_dim, 1 + chunks * 3, SIZE // 8, SIZE // 8)
    assert torch.isfinite(latent["samples"]).all()


def test_sampler_is_seeded(pack, model, features, sampled):
    again = _sample(pack, model, features[0])
    torch.testing.assert_close(again[0], sampled[0], rtol=0, atol=0)
    other = _sample(pack, model, features[0], seed=4)
    assert not torch.equal(other[0], sampled[0])


def test_sampler_with_text_guidance_and_mask(pack, model, features, sampled):
    mask = torch.zeros(1, 40, 48)
    mask[:, 20:, 12:36] = 1
    [guidance] = pack.ACCGuidance.execute(mode="text_audio_cfg", text_scale=4.0, audio_scale=3.0, schedule=True,
                                          phases="0.5:1,1:0", inside_weight=1.0, outside_weight=0.3,
                                          region_mask=mask)
    text_dim, text_len = TINY.dit.text_dim, TINY.dit.text_len
    positive = [[torch.randn(1, text_len + 5, text_dim), {"pooled_output": None}]]  # longer texts are cut
    negative = [[torch.zeros(1, 3, text_dim), {}]]
    frames = _sample(pack, model, features[0], positive=positive, negative=negative, guidance=guidance)[0]
    assert frames.shape == sampled[0].shape and torch.isfinite(frames).all()
    assert not torch.equal(frames, sampled[0])


def test_sampler_rejects_an_image_batch(pack, model, features):
    with pytest.raises(ValueError, match=r"one reference image \(IMAGE \[1, H, W, 3\]\), got shape \(2, 40, 48, 3\)"):
        _sample(pack, model, features[0], image=comfy_image(batch=2))


def test_sampler_rejects_conditioning_of_another_width(pack, model, features):
    positive = [[torch.randn(1, 4, 4096), {}]]
    expected = rf"positive conditioning has shape \(1, 4, 4096\).*\[1, L, {TINY.dit.text_dim}\]"
    with pytest.raises(ValueError, match=expected):
        _sample(pack, model, features[0], positive=positive)


def test_sampler_rejects_an_ignored_mask(pack, model, features):
    [guidance] = pack.ACCGuidance.execute(mode="single", text_scale=5.0, audio_scale=4.0, schedule=True,
                                          phases="1:1", inside_weight=1.0, outside_weight=0.3,
                                          region_mask=torch.ones(1, 8, 8))
    with pytest.raises(ValueError, match="acts only through the spatiotemporal schedule"):
        _sample(pack, model, features[0], guidance=guidance)


def test_sampler_reports_progress_with_previews(pack, comfy, model, features):
    calls = []
    comfy.utils.set_progress_bar_global_hook(lambda value, total, preview, **_: calls.append((value, total, preview)))
    try:
        _sample(pack, model, features[0])
    finally:
        comfy.utils.set_progress_bar_global_hook(None)
    assert [(value, total) for value, total, _ in calls] == [(1, 3), (2, 3), (3, 3)]
    kind, image, max_size = calls[-1][2]
    assert kind == "JPEG" and image.size == (SIZE, SIZE) and max_size == SIZE  # small frames are not upscaled


def test_sampler_stops_when_interrupted(pack, comfy, model, features):
    calls = []

    def interrupt_after_first_chunk(value, total, preview, **_):
        calls.append(value)
        comfy.model_management.interrupt_current_processing(True)

    comfy.utils.set_progress_bar_global_hook(interrupt_after_first_chunk)
    try:
        with pytest.raises(comfy.model_management.InterruptProcessingException):
            _sample(pack, model, features[0])
    finally:
        comfy.utils.set_progress_bar_global_hook(None)
        comfy.model_management.interrupt_current_processing(False)
    assert calls == [1]


# Refined VAE Decode


def _decode(pack, model, latent, **overrides):
    inputs = dict(model=model, latent=latent, decoder="base", drop_reference_frame=True, num_frames=0, chunk_frames=2)
    return pack.RefinedVAEDecode.execute(**{**inputs, **overrides})[0]


def test_decode_base_reproduces_the_sampler_frames(pack, model, sampled):
    frames, _, latent, _ = sampled
    decoded = _decode(pack, model, latent, num_frames=frames.shape[0])
    torch.testing.assert_close(decoded, frames, rtol=0, atol=1e-5)
    everything = _decode(pack, model, latent, chunk_frames=4)
    assert everything.shape[0] == 4 * (latent["samples"].shape[2] - 1)
    torch.testing.assert_close(everything[: frames.shape[0]], frames, rtol=0, atol=1e-5)


def test_decode_with_refiner(pack, model, sampled):
    frames, _, latent, _ = sampled
    refined = _decode(pack, model, latent, decoder="refiner", num_frames=frames.shape[0])
    assert refined.shape == frames.shape and not torch.allclose(refined, frames)
    torch.testing.assert_close(_decode(pack, model, latent, decoder="auto", num_frames=frames.shape[0]), refined)


def test_decode_refiner_needs_one_loaded(pack, models_dir, sampled):
    without = _load(pack)
    with pytest.raises(ValueError, match="refiner = none"):
        _decode(pack, without, sampled[2], decoder="refiner")


def test_decode_rejects_too_many_frames(pack, model, sampled):
    latent = sampled[2]
    with pytest.raises(ValueError, match=r"num_frames 1000 asked, but these 10 latent frames decode to 36 frames"):
        _decode(pack, model, latent, num_frames=1000)


def test_decode_stops_when_interrupted(pack, comfy, model, sampled):
    comfy.model_management.interrupt_current_processing(True)
    try:
        with pytest.raises(comfy.model_management.InterruptProcessingException):
            _decode(pack, model, sampled[2])
    finally:
        comfy.model_management.interrupt_current_processing(False)


def test_bf16_model_samples_and_decodes(pack, models_dir):
    bf16 = pack.LoadEchoTorrent.execute(dit=DIT_FILE, vae=VAE_FILE, audio_encoder=AUDIO_ENCODER_FILE,
                                        refiner=REFINER_FILE, dtype="bf16", device="cpu")[0]
    assert {p.dtype for p in bf16.dit.parameters()} == {torch.bfloat16}
    assert {p.dtype for p in bf16.refiner.parameters()} == {torch.bfloat16}
    assert {p.dtype for p in bf16.audio_encoder.parameters()} == {torch.float32}
    payload, frame_count = pack.AudioEncode.execute(model=bf16, audio=comfy_audio(0.5), fps=FPS,
                                                    normalize_loudness=True)
    frames, _, latent, _ = _sample(pack, bf16, payload)
    assert frames.shape == (frame_count, SIZE, SIZE, 3) and torch.isfinite(frames).all()
    decoded = _decode(pack, bf16, latent, num_frames=frame_count)
    torch.testing.assert_close(decoded, frames, rtol=0, atol=1e-5)


# ComfyUI's Wan LATENT convention and core VAEs


def _core_vae(comfy, models_dir: Path):
    """A core `comfy.sd.VAE` read from the Wan VAE file, as core Load VAE builds it."""
    import comfy.sd
    import comfy.utils

    return comfy.sd.VAE(sd=comfy.utils.load_torch_file(str(models_dir / "vae" / VAE_FILE)))


def test_sampler_latent_is_raw_vae_output(model, sampled):
    """The LATENT's first frame is the portrait's raw encoder output (ComfyUI's Wan convention), not normalised."""
    from echotorrent_core.media import load_image

    latent = sampled[2]["samples"]
    portrait = load_image(comfy_image()[0], SIZE, SIZE, "cover")[None, :, None]
    with torch.no_grad():
        raw = model.vae.encode_raw(portrait)
    torch.testing.assert_close(latent[:, :, :1], raw, rtol=0, atol=1e-5)
    assert not torch.allclose(latent[:, :, :1], model.vae.normalise(raw), atol=1e-2)


def test_core_vae_decode_of_the_sampler_latent_equals_ours(pack, comfy, model, models_dir, sampled):
    frames, _, latent, _ = sampled
    core = _core_vae(comfy, models_dir)
    with torch.no_grad():
        theirs = core.decode(latent["samples"])[0]  # [1 + 4 (F - 1), H, W, 3]
    ours = _decode(pack, model, latent, drop_reference_frame=False)
    torch.testing.assert_close(ours, theirs, rtol=0, atol=1e-4)
    torch.testing.assert_close(theirs[1 : 1 + frames.shape[0]], frames, rtol=0, atol=1e-4)


def test_refined_decode_of_a_core_latent_equals_core_decode(pack, comfy, model, models_dir):
    core = _core_vae(comfy, models_dir)
    video = torch.rand(9, SIZE, SIZE, 3, generator=torch.Generator().manual_seed(5))
    with torch.no_grad():
        core_latent = {"samples": core.encode(video)}  # core VAE Encode: raw latents [1, 16, 3, 4, 4]
        theirs = core.decode(core_latent["samples"])[0]
    ours = _decode(pack, model, core_latent, drop_reference_frame=False, chunk_frames=1)
    torch.testing.assert_close(ours, theirs, rtol=0, atol=1e-4)


def test_loader_takes_a_core_vae_without_copying_it(pack, comfy, models_dir, sampled):
    core = _core_vae(comfy, models_dir)
    loaded = pack.LoadEchoTorrent.execute(dit=DIT_FILE, vae="no file needed.safetensors",
                                          audio_encoder=AUDIO_ENCODER_FILE, refiner="none", dtype="auto",
                                          device="auto", core_vae=core)[0]
    ours = dict(loaded.vae.named_parameters())
    theirs = dict(core.first_stage_model.named_parameters())
    assert ours.keys() == theirs.keys()
    assert all(ours[name].data_ptr() == theirs[name].data_ptr() for name in ours)  # shared, not a second copy
    assert loaded.reports[1].path == "the VAE input (Load VAE)"
    latent = sampled[2]
    with torch.no_grad():
        expected = core.decode(latent["samples"])[0][1:]
    torch.testing.assert_close(_decode(pack, loaded, latent), expected, rtol=0, atol=1e-4)


def test_loader_rejects_a_core_vae_of_another_kind(pack, models_dir):
    class ImageVAE:  # what Load VAE gives for an SD / Flux VAE: 2D latents
        first_stage_model = torch.nn.Linear(2, 2)
        latent_channels, latent_dim = 4, 2

    with pytest.raises(ValueError, match=r"must be a Wan 2\.1 video VAE from Load VAE .* got Linear with 4 latent"):
        pack.LoadEchoTorrent.execute(dit=DIT_FILE, vae=VAE_FILE, audio_encoder=AUDIO_ENCODER_FILE, refiner="none",
                                     dtype="auto", device="auto", core_vae=ImageVAE())


# Image-to-video checkpoints with a core CLIP_VISION_OUTPUT


def _clip_output(comfy, seed: int):
    """A CLIP_VISION_OUTPUT as core CLIP Vision Encode returns it (random features of the CLIP-H shape)."""
    import comfy.clip_vision

    output = comfy.clip_vision.Output()
    generator = torch.Generator().manual_seed(seed)
    output.penultimate_hidden_states = torch.randn(1, 257, 1280, generator=generator)
    output.last_hidden_state = torch.randn(1, 257, 1280, generator=generator)
    output.image_embeds = torch.randn(1, 1024, generator=generator)
    return output


@pytest.fixture(scope="module")
def i2v_model(pack, models_dir):
    return _load(pack, dit=I2V_DIT_FILE)


def test_i2v_checkpoint_runs_with_a_core_clip_vision_output(pack, comfy, i2v_model, features):
    assert i2v_model.dit.cfg.in_dim == 36 and i2v_model.dit.cfg.image_dim == 1280
    frames, _, latent, _ = _sample(pack, i2v_model, features[0], clip_vision_output=_clip_output(comfy, 1))
    assert frames.shape == (features[0].num_frames, SIZE, SIZE, 3) and torch.isfinite(frames).all()
    assert latent["samples"].shape[1] == 16
    other = _sample(pack, i2v_model, features[0], clip_vision_output=_clip_output(comfy, 2))[0]
    assert not torch.allclose(other, frames)  # the CLIP features reach the DiT


def test_i2v_clip_vision_output_is_checked(pack, comfy, model, i2v_model, features):
    with pytest.raises(ValueError, match="image-to-video checkpoint: connect clip_vision_output"):
        _sample(pack, i2v_model, features[0])
    with pytest.raises(ValueError, match="this DiT has no CLIP image branch"):
        _sample(pack, model, features[0], clip_vision_output=_clip_output(comfy, 1))
    small = _clip_output(comfy, 1)
    small.penultimate_hidden_states = torch.zeros(1, 50, 768)
    with pytest.raises(ValueError, match=r"penultimate_hidden_states \[1, 257, 1280\].*\(1, 50, 768\)"):
        _sample(pack, i2v_model, features[0], clip_vision_output=small)


# EchoTorrent Stream -> EchoTorrent Save Stream


@pytest.fixture
def output_dir(comfy, tmp_path: Path):
    import folder_paths

    before = folder_paths.get_output_directory()
    folder_paths.set_output_directory(str(tmp_path))
    yield tmp_path
    folder_paths.set_output_directory(before)


def _stream(pack, model, features, **overrides):
    inputs = dict(model=model, image=comfy_image(), audio_features=features, width=SIZE, height=SIZE, seed=3,
                  steps=2, shift=5.0, solver="few_step", chunk_frames=3, window_frames=6)
    return pack.EchoTorrentStreamNode.execute(**{**inputs, **overrides})[0]


def _save(pack, stream, **overrides):
    return pack.SaveStream.execute(**{**dict(stream=stream, filename_prefix="video/et", decoder="base", crf=0),
                                      **overrides})


def _mp4(path: Path) -> tuple[torch.Tensor, float, set[str]]:
    """Decoded frames [T, H, W, 3] in [0, 1], audio seconds and the codec names of an mp4."""
    import av
    import numpy as np

    with av.open(str(path)) as container:
        codecs = {stream.codec_context.name for stream in container.streams}
        frames = [frame.to_ndarray(format="rgb24") for frame in container.decode(video=0)]
    with av.open(str(path)) as container:
        audio = container.streams.audio[0]
        seconds = sum(frame.samples for frame in container.decode(audio)) / audio.rate
    return torch.from_numpy(np.stack(frames)).float() / 255, seconds, codecs


def test_save_stream_writes_the_sampler_video(pack, model, features, sampled, output_dir):
    stream = _stream(pack, model, features[0])
    assert stream.audio is features[0] and (stream.height, stream.width) == (SIZE, SIZE)
    result = _save(pack, stream)
    [saved] = result.ui.as_dict()["images"]
    assert result.ui.as_dict()["animated"] == (True,)
    path = output_dir / saved["subfolder"] / saved["filename"]
    assert (saved["subfolder"], saved["type"], path.suffix) == ("video", "output", ".mp4")
    frames, seconds, codecs = _mp4(path)
    assert codecs == {"h264", "aac"}
    assert frames.shape == sampled[0].shape  # 25 frames: the audio's second at 25 fps
    assert abs(seconds - 1.0) < 0.05
    luma = torch.tensor([0.299, 0.587, 0.114])  # crf 0 keeps luma losslessly; yuv420p halves the chroma
    assert ((frames - sampled[0]) @ luma).abs().max() < 0.02  # the sampler's own frames
    assert result.args[0].get_dimensions() == (SIZE, SIZE)  # VIDEO output read from the file


def test_save_stream_interrupted_leaves_a_playable_file(pack, comfy, model, features, output_dir, caplog):
    def interrupt_after_second_chunk(value, total, preview, **_):
        if value == 2:
            comfy.model_management.interrupt_current_processing(True)

    comfy.utils.set_progress_bar_global_hook(interrupt_after_second_chunk)
    try:
        with caplog.at_level(logging.INFO, logger="echotorrent"), \
                pytest.raises(comfy.model_management.InterruptProcessingException):
            _save(pack, _stream(pack, model, features[0]))
    finally:
        comfy.utils.set_progress_bar_global_hook(None)
        comfy.model_management.interrupt_current_processing(False)
    [path] = (output_dir / "video").glob("*.mp4")
    frames, seconds, codecs = _mp4(path)
    assert codecs == {"h264", "aac"} and frames.shape[0] == 24  # the two chunks done, 12 frames each
    assert abs(seconds - 24 / FPS) < 0.05
    assert f"interrupted after 2 of 3 chunks: 24 frames (0.96 s) saved as a playable mp4 to {path}" in caplog.text


def test_save_stream_decodes_with_the_refiner(pack, model, features, output_dir):
    stream = _stream(pack, model, features[0])
    base = _mp4(output_dir / "video" / _save(pack, stream).ui.as_dict()["images"][0]["filename"])[0]
    refined = _mp4(output_dir / "video" / _save(pack, stream, decoder="auto").ui.as_dict()["images"][0]["filename"])[0]
    assert base.shape == refined.shape and (base - refined).abs().mean() > 0.01


def test_unlimited_window_says_what_it_allocates(pack, comfy, model, features, output_dir, caplog, monkeypatch):
    stream_module = importlib.import_module(f"{PACK_MODULE}.nodes.stream")
    stream = _stream(pack, model, features[0], window_frames=0)
    sampler = stream_module.StreamingSampler(model.dit, model.vae, stream.settings)
    needed = stream_module.kv_cache_bytes(stream, sampler)
    cfg = model.dit.cfg
    tokens, frames = (SIZE // 16) ** 2, 1 + 9  # sink + 3 chunks of 3 latent frames
    per_frame = 2 * cfg.num_layers * tokens * cfg.dim * 4  # K and V of every block, float32
    # Every frame's keys and values are held; workspaces (the chunk's slots, rotated keys) at most double that.
    assert frames * per_frame <= needed <= 2 * (frames + stream.settings.chunk_frames) * per_frame

    monkeypatch.setattr(comfy.model_management, "get_free_memory", lambda *_, **__: needed - 1)
    size = stream_module.readable_bytes(needed)
    with pytest.raises(MemoryError, match=rf"keeps all 9 latent frames of this 1\.0 s stream in the KV cache: "
                                          rf"{size} on cpu, .* does not fit: set window_frames"):
        _save(pack, stream)
    assert not list(output_dir.rglob("*.mp4"))  # refused before anything was written
    monkeypatch.setattr(comfy.model_management, "get_free_memory", lambda *_, **__: needed)
    with caplog.at_level(logging.INFO, logger="echotorrent"):
        _save(pack, stream)
    assert f"keeps all 9 latent frames of this 1.0 s stream in the KV cache: {size} on cpu" in caplog.text

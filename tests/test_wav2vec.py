"""AudioEncoder and the Hugging Face -> torchaudio key mapping against tiny random transformers wav2vec2 models."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from transformers import Wav2Vec2Config, Wav2Vec2FeatureExtractor, Wav2Vec2ForCTC, Wav2Vec2ForPreTraining

from echotorrent_core.checkpoints.wav2vec_keys import (
    config_from_state_dict,
    huggingface_to_torchaudio,
    is_huggingface_layout,
    is_torchaudio_layout,
)
from echotorrent_core.config import PRESETS
from echotorrent_core.models.wav2vec import AudioEncoder, normalize_waveform, prepare_waveform

STRIDES = (5, 2, 2)
TOLERANCE = 1e-4


def _hf_ctc(stable: bool, conv_bias: bool = False) -> Wav2Vec2ForCTC:
    """Tiny CTC model; `stable` = large-style layer-norm extractor + pre-LN encoder, else base-style."""
    cfg = Wav2Vec2Config(
        hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=64,
        conv_dim=(16, 16, 16), conv_kernel=(10, 3, 3), conv_stride=STRIDES, conv_bias=conv_bias,
        num_conv_pos_embeddings=16, num_conv_pos_embedding_groups=4, vocab_size=12,
        feat_extract_norm="layer" if stable else "group", do_stable_layer_norm=stable,
    )
    model = Wav2Vec2ForCTC(cfg).eval()
    with torch.no_grad():  # non-trivial norms so a swapped or misplaced norm shows up
        for name, param in model.named_parameters():
            if "layer_norm" in name:
                param.add_(torch.randn_like(param) * 0.2)
    return model


def _encoder_from(hf_state: dict[str, torch.Tensor]) -> AudioEncoder:
    config = config_from_state_dict(hf_state, num_heads=2, conv_strides=STRIDES)
    encoder = AudioEncoder(config).eval()
    encoder.model.load_state_dict(huggingface_to_torchaudio(hf_state), strict=True)
    return encoder


def _with_weight_g_v(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """The older weight-norm naming of the positional conv, as in wav2vec2-base-960h files."""
    renamed = {}
    for key, value in state.items():
        key = key.replace("parametrizations.weight.original0", "weight_g")
        renamed[key.replace("parametrizations.weight.original1", "weight_v")] = value
    return renamed


@pytest.mark.parametrize("stable", [False, True])
def test_hidden_states_match_transformers(stable: bool) -> None:
    torch.manual_seed(0)
    ctc = _hf_ctc(stable, conv_bias=stable)
    encoder = _encoder_from(ctc.wav2vec2.state_dict())
    assert encoder.cfg.extractor_mode == ("layer_norm" if stable else "group_norm")
    assert encoder.cfg.encoder_layer_norm_first is stable
    assert encoder.cfg.extractor_conv_bias is stable
    waveform = torch.randn(2, 3000)
    with torch.no_grad():
        expected = torch.stack(ctc.wav2vec2(waveform, output_hidden_states=True).hidden_states[1:], dim=1)
        ours = encoder.hidden_states(waveform)
    assert ours.shape == expected.shape == (2, 2, 149, 32)
    assert (ours - expected).abs().max() < TOLERANCE


def _pretraining_state(ctc: Wav2Vec2ForCTC) -> dict[str, torch.Tensor]:
    """The same encoder inside a Wav2Vec2ForPreTraining (quantizer and projection heads around it)."""
    pretraining = Wav2Vec2ForPreTraining(ctc.config)
    pretraining.wav2vec2.load_state_dict(ctc.wav2vec2.state_dict())
    return pretraining.state_dict()


def test_prefixed_and_weight_g_v_variants_load_identically() -> None:
    torch.manual_seed(1)
    ctc = _hf_ctc(stable=False)
    plain = ctc.wav2vec2.state_dict()
    variants = {
        "plain": plain,
        "ctc": ctc.state_dict(),
        "weight_g_v": _with_weight_g_v(ctc.state_dict()),
        "pretraining": _pretraining_state(ctc),
    }
    assert any(k.startswith("quantizer.") for k in variants["pretraining"])
    assert any(k.startswith("lm_head.") for k in variants["ctc"]) and "masked_spec_embed" in plain
    assert "wav2vec2.encoder.pos_conv_embed.conv.weight_g" in variants["weight_g_v"]
    reference = huggingface_to_torchaudio(plain)
    assert not any("lm_head" in k or "masked_spec_embed" in k for k in reference)
    waveform = torch.randn(1, 2000)
    with torch.no_grad():
        outputs = {name: _encoder_from(sd).hidden_states(waveform) for name, sd in variants.items()}
    for name, state in variants.items():
        mapped = huggingface_to_torchaudio(state)
        assert mapped.keys() == reference.keys(), name
        assert all(torch.equal(mapped[k], reference[k]) for k in reference), name
        assert torch.equal(outputs[name], outputs["plain"]), name


def test_layout_detection_and_config_errors() -> None:
    torch.manual_seed(2)
    hf_state = _hf_ctc(stable=False).state_dict()
    torchaudio_state = huggingface_to_torchaudio(hf_state)
    assert is_huggingface_layout(hf_state) and not is_torchaudio_layout(hf_state)
    assert is_torchaudio_layout(torchaudio_state) and not is_huggingface_layout(torchaudio_state)
    assert config_from_state_dict(torchaudio_state, num_heads=2, conv_strides=STRIDES) == config_from_state_dict(
        hf_state, num_heads=2, conv_strides=STRIDES
    )
    with pytest.raises(ValueError, match="conv_strides"):
        config_from_state_dict(hf_state, num_heads=2)
    with pytest.raises(ValueError, match="num_heads"):
        config_from_state_dict(hf_state, conv_strides=STRIDES)
    with pytest.raises(ValueError, match="not a Hugging Face wav2vec2"):
        huggingface_to_torchaudio({"weight": torch.zeros(1)})
    with pytest.raises(ValueError, match="not a wav2vec2 state dict"):
        config_from_state_dict({"weight": torch.zeros(1)})


def _reference_encode(ctc: Wav2Vec2ForCTC, waveform: torch.Tensor, num_frames: int) -> torch.Tensor:
    """MultiTalk recipe with the transformers modules: CNN -> interpolate -> projection -> encoder layers."""
    hf = ctc.wav2vec2
    captured: list[torch.Tensor] = []
    hooks = [layer.register_forward_hook(lambda _m, _i, out: captured.append(out)) for layer in hf.encoder.layers]
    with torch.no_grad():
        cnn = hf.feature_extractor(waveform[None])
        cnn = F.interpolate(cnn, size=num_frames, mode="linear", align_corners=True).transpose(1, 2)
        hidden, _ = hf.feature_projection(cnn)
        hf.encoder(hidden)
    for hook in hooks:
        hook.remove()
    outputs = [out[0] if isinstance(out, tuple) else out for out in captured]
    return torch.stack(outputs, dim=1)[0].transpose(0, 1)


def test_encode_matches_interpolated_reference() -> None:
    torch.manual_seed(3)
    ctc = _hf_ctc(stable=False)
    encoder = _encoder_from(ctc.wav2vec2.state_dict())
    waveform = torch.randn(16000 // 2) * 0.3  # 0.5 s
    normalized = torch.from_numpy(
        Wav2Vec2FeatureExtractor(do_normalize=True)(waveform.numpy(), sampling_rate=16000).input_values[0]
    )
    assert (normalize_waveform(waveform) - normalized).abs().max() < 1e-5
    features = encoder.encode(waveform, fps=25.0)
    assert features.shape == (12, 2, 32)  # round(0.5 * 25) frames
    assert (features - _reference_encode(ctc, normalized, 12)).abs().max() < TOLERANCE
    raw = encoder.encode(waveform, fps=30.0, num_frames=7, normalize=False)
    assert raw.shape == (7, 2, 32)
    assert (raw - _reference_encode(ctc, waveform, 7)).abs().max() < TOLERANCE
    assert encoder.encode(waveform, fps=25.0, num_frames=1).shape == (1, 2, 32)


def test_segmenting_matches_single_pass() -> None:
    torch.manual_seed(4)
    encoder = _encoder_from(_hf_ctc(stable=True).wav2vec2.state_dict())
    waveform = torch.randn(16000 * 2) * 0.3  # 2 s = 50 frames at 25 fps
    single = encoder.encode(waveform, fps=25.0)
    full_context = encoder.encode(waveform, fps=25.0, segment_seconds=0.4, context_seconds=2.0)
    assert (full_context - single).abs().max() < TOLERANCE  # segments that see everything change nothing
    segmented = encoder.encode(waveform, fps=25.0, segment_seconds=0.4, context_seconds=0.4)
    assert segmented.shape == single.shape == (50, 2, 32)
    relative = (segmented - single).norm() / single.norm()
    shifted = (segmented[1:] - single[:-1]).norm() / single[:-1].norm()
    assert relative < 0.02 and relative < shifted / 10


def test_tiny_preset_encodes() -> None:
    torch.manual_seed(5)
    encoder = AudioEncoder(PRESETS["tiny"].wav2vec).eval()
    features = encoder.encode(torch.randn(16000), fps=25.0)
    assert features.shape == (25, 2, 32) and torch.isfinite(features).all()


def test_prepare_waveform_mixes_and_resamples() -> None:
    torch.manual_seed(6)
    stereo = torch.randn(2, 4410)
    mono = prepare_waveform(stereo, 44100, 16000)
    assert mono.shape == (1600,)
    tone = torch.sin(torch.arange(48000) / 48000 * 2 * torch.pi * 440)
    resampled = prepare_waveform(torch.stack([tone, tone]), 48000, 16000)
    expected = torch.sin(torch.arange(16000) / 16000 * 2 * torch.pi * 440)
    assert (resampled[100:-100] - expected[100:-100]).abs().max() < 1e-2
    assert torch.equal(prepare_waveform(tone, 16000, 16000), tone)


@pytest.mark.parametrize(
    ("waveform", "message"),
    [
        (torch.zeros(2, 0), "empty"),
        (torch.zeros(1, 2, 3), r"\[channels, samples\]"),
        (torch.tensor([0.0, float("nan")]), "NaN"),
        (torch.zeros(10, dtype=torch.int16), "floating point"),
        (np.zeros(10), r"\[channels, samples\]"),
    ],
)
def test_prepare_waveform_rejects_bad_input(waveform: object, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        prepare_waveform(waveform, 16000)  # type: ignore[arg-type]


def test_encode_rejects_bad_input() -> None:
    encoder = AudioEncoder(PRESETS["tiny"].wav2vec).eval()
    with pytest.raises(ValueError, match="mono"):
        encoder.encode(torch.zeros(2, 16000), fps=25.0)
    with pytest.raises(ValueError, match="at least 400"):
        encoder.encode(torch.zeros(100), fps=25.0)
    with pytest.raises(ValueError, match="NaN"):
        encoder.encode(torch.full((16000,), float("nan")), fps=25.0)
    with pytest.raises(ValueError, match="fps"):
        encoder.encode(torch.zeros(16000), fps=0.0)
    with pytest.raises(ValueError, match="num_frames"):
        encoder.encode(torch.zeros(16000), fps=25.0, num_frames=0)
    with pytest.raises(ValueError, match="samples >= 400"):
        encoder.hidden_states(torch.zeros(16000))

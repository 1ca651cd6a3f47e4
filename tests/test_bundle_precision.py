"""`recipes.bundle.write_bundle` keeps float32 within the budgets and stores the DiT and VAE in float16 when one file
would pass the per-file limit (the repository tracks no file over 20 MiB)."""

import pytest
from safetensors import safe_open

from echotorrent_core.pipeline import BUNDLE_FILES
from echotorrent_core.random_bundle import write_random_bundle
from echotorrent_core.recipes.bundle import write_bundle


def _dtypes(path) -> set[str]:
    with safe_open(str(path), "pt") as handle:
        return {str(handle.get_slice(key).get_dtype()) for key in handle.keys()}


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    return write_random_bundle(tmp_path_factory.mktemp("trained"))


def _write(trained, out, **limits):
    files = {name: trained / file for name, file in BUNDLE_FILES.items()}
    return write_bundle(out, files["dit"], files["vae"], files["audio_encoder"], {"chunk_frames": 3}, 64, **limits)


def test_float32_when_within_both_limits(trained, tmp_path) -> None:
    _write(trained, tmp_path)
    assert _dtypes(tmp_path / BUNDLE_FILES["dit"]) == {"F32"}


def test_one_file_over_the_per_file_limit_stores_dit_and_vae_in_float16(trained, tmp_path) -> None:
    dit_bytes = (trained / BUNDLE_FILES["dit"]).stat().st_size
    _write(trained, tmp_path, max_file_bytes=dit_bytes - 1)
    assert _dtypes(tmp_path / BUNDLE_FILES["dit"]) == {"F16"} and _dtypes(tmp_path / BUNDLE_FILES["vae"]) == {"F16"}
    assert (tmp_path / BUNDLE_FILES["dit"]).stat().st_size < 0.6 * dit_bytes


def test_over_the_limit_even_in_float16_is_an_error_naming_the_budget(trained, tmp_path) -> None:
    with pytest.raises(ValueError, match="MiB per file"):
        _write(trained, tmp_path, max_file_bytes=1024)

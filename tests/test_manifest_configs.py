"""The manifest's `configs/` holds exactly the configs of the run that wrote it: a config of a stage the recipe no
longer has (left in the bundle folder by an earlier run) is removed, not hashed into the manifest."""

import json

from echotorrent_core.random_bundle import write_random_bundle
from echotorrent_core.recipes.bundle import write_manifest


def test_configs_of_replaced_stages_do_not_stay_in_the_manifest(tmp_path) -> None:
    bundle = write_random_bundle(tmp_path / "bundle")
    (bundle / "configs").mkdir()
    (bundle / "configs" / "vae_motion.toml").write_text("# a stage of an earlier recipe\n")
    config = tmp_path / "vae_video.toml"
    config.write_text("[trainer]\nsteps = 1\n")
    manifest = json.loads(write_manifest(bundle, [config], {"name": "test"}).read_text())
    assert sorted(p.name for p in (bundle / "configs").iterdir()) == ["vae_video.toml"]
    assert "configs/vae_video.toml" in manifest["files"] and "configs/vae_motion.toml" not in manifest["files"]

"""A seeded, download-free music catalog with known ground truth: synthesized audio whose labels are audible,
lyrics, covers, and simulated listening data. `build_catalog(out_dir, preset, seed)` writes one."""

from toycatalog.build import PRESETS, Preset, build_catalog, load_manifest, replay_listeners
from toycatalog.listeners import item_features

__all__ = ["PRESETS", "Preset", "build_catalog", "item_features", "load_manifest", "replay_listeners"]

"""mmsearch Python model implementations: BLIP / BLIP-2 feature extractors (torch only)."""
from .checkpoint import CheckpointError
from .blip import BlipFeatureExtractor, FeatureExtractor
from .blip2 import Blip2FeatureExtractor
from .zoo import (MODELS, CheckpointFile, ModelSpec, build_model, deterministic_model, load_checkpoint_files,
                  model_config, tiny_config, write_deterministic_checkpoints)

__all__ = ["CheckpointError", "FeatureExtractor", "BlipFeatureExtractor", "Blip2FeatureExtractor", "MODELS",
           "CheckpointFile", "ModelSpec", "build_model", "deterministic_model", "load_checkpoint_files",
           "model_config", "tiny_config", "write_deterministic_checkpoints"]

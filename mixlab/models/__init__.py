"""Decoder-only transformer with dense or MoE feed-forward layers."""

from mixlab.models.config import ModelConfig
from mixlab.models.decode import KVCache
from mixlab.models.transformer import Transformer

__all__ = ["KVCache", "ModelConfig", "Transformer"]

"""mixlab data layer: tokenizers, built-in corpus or your own domains, mixtures and the Grain pipeline."""

from mixlab.data import arms, audit, plan, sources, tokenizer
from mixlab.data.builtin.corpus import DOMAINS, load_documents
from mixlab.data.mixture import Mixture, resolve_mixture
from mixlab.data.pipeline import eval_batches, make_train_dataset
from mixlab.data.plan import DataPlan, resolve_plan
from mixlab.data.tokenizer import BPETokenizer, ByteTokenizer, Tokenizer

__all__ = [
    "DOMAINS",
    "BPETokenizer",
    "ByteTokenizer",
    "DataPlan",
    "Mixture",
    "Tokenizer",
    "arms",
    "audit",
    "eval_batches",
    "load_documents",
    "make_train_dataset",
    "plan",
    "resolve_mixture",
    "resolve_plan",
    "sources",
    "tokenizer",
]

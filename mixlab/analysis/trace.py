"""A routing trace: which experts every MoE layer chose for a fixed sample of tokens, and their gates.

Saved as `OUT/<run>/traces_step_<S>.npz` with exactly these arrays (N MoE layers, T tokens, K top-k):

  experts       int32 [N, T, K]  chosen experts, rank order (highest score first)
  gates         float32 [N, T, K]
  domain        int32 [T]        index into domain_names
  token_id      int32 [T]        the input token routed at this position
  position      int32 [T]        position in its sequence (a sequence's tokens are stored contiguously)
  domain_names  str [D]
  counts        int64 [N, D, E]  n[l, d, e] of the sample; E, the number of experts, is its last dim
"""

from __future__ import annotations

import dataclasses
import json
import os

import numpy as np

from mixlab.analysis import metrics


@dataclasses.dataclass(frozen=True)
class Trace:
    experts_NTK: np.ndarray
    gates_NTK: np.ndarray
    domain_T: np.ndarray
    token_T: np.ndarray
    position_T: np.ndarray
    domain_names: tuple[str, ...]
    counts_NDE: np.ndarray

    @classmethod
    def build(
        cls,
        experts_NTK: np.ndarray,
        gates_NTK: np.ndarray,
        domain_T: np.ndarray,
        token_T: np.ndarray,
        position_T: np.ndarray,
        domain_names: tuple[str, ...] | list[str],
        num_experts: int,
    ) -> Trace:
        """A trace whose counts are computed from its experts (the one way new traces are made)."""
        experts_NTK = np.asarray(experts_NTK, np.int32)
        domain_T = np.asarray(domain_T, np.int32)
        if experts_NTK.size and (experts_NTK.min() < 0 or experts_NTK.max() >= num_experts):
            raise ValueError(f"expert ids outside [0, {num_experts})")
        counts = metrics.counts(experts_NTK, domain_T, len(domain_names), num_experts)
        return cls(
            experts_NTK,
            np.asarray(gates_NTK, np.float32),
            domain_T,
            np.asarray(token_T, np.int32),
            np.asarray(position_T, np.int32),
            tuple(str(d) for d in domain_names),
            counts,
        )

    def __post_init__(self):
        N, T, K = self.experts_NTK.shape
        for name, arr, shape in (
            ("gates", self.gates_NTK, (N, T, K)),
            ("domain", self.domain_T, (T,)),
            ("token_id", self.token_T, (T,)),
            ("position", self.position_T, (T,)),
            ("counts", self.counts_NDE, (N, len(self.domain_names), self.counts_NDE.shape[-1])),
        ):
            if arr.shape != shape:
                raise ValueError(f"trace array {name} has shape {arr.shape}, expected {shape}")

    @property
    def num_layers(self) -> int:
        return self.experts_NTK.shape[0]

    @property
    def num_tokens(self) -> int:
        return self.experts_NTK.shape[1]

    @property
    def top_k(self) -> int:
        return self.experts_NTK.shape[2]

    @property
    def num_experts(self) -> int:
        return self.counts_NDE.shape[-1]

    @property
    def num_domains(self) -> int:
        return len(self.domain_names)

    def tokens_per_domain(self) -> dict[str, int]:
        n_D = np.bincount(self.domain_T, minlength=self.num_domains)
        return {d: int(n) for d, n in zip(self.domain_names, n_D, strict=True)}

    def same_tokens(self, other: Trace) -> bool:
        """Whether `other` holds the same sampled tokens in the same order (saturation needs it)."""
        return (
            self.domain_names == other.domain_names
            and np.array_equal(self.domain_T, other.domain_T)
            and np.array_equal(self.token_T, other.token_T)
            and np.array_equal(self.position_T, other.position_T)
        )

    def save(self, path: str) -> str:
        os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
        tmp = path + ".tmp.npz"  # written whole, then renamed: a killed run leaves no half trace
        np.savez(
            tmp,
            experts=self.experts_NTK,
            gates=self.gates_NTK,
            domain=self.domain_T,
            token_id=self.token_T,
            position=self.position_T,
            domain_names=np.asarray(self.domain_names, dtype=str),
            counts=self.counts_NDE,
        )
        os.replace(tmp, path)
        return path

    @classmethod
    def load(cls, path: str) -> Trace:
        with np.load(path, allow_pickle=False) as z:
            return cls(
                z["experts"],
                z["gates"],
                z["domain"],
                z["token_id"],
                z["position"],
                tuple(str(d) for d in z["domain_names"]),
                z["counts"].astype(np.int64),
            )


def trace_path(out: str, run: str, step: int) -> str:
    return os.path.join(out, run, f"traces_step_{step}.npz")


def meta_path(out: str, run: str, step: int) -> str:
    """Beside each trace: how it was sampled, per-domain losses and the redundancy test (JSON)."""
    return os.path.join(out, run, f"collect_step_{step}.json")


def nll_path(out: str, run: str, step: int) -> str:
    """Beside each trace: the model's per-token nll on its tokens (float32 [T], .npy)."""
    return os.path.join(out, run, f"nll_step_{step}.npy")


def read_json(path: str) -> dict | None:
    try:
        with open(path) as f:
            return json.load(f)
    except (FileNotFoundError, json.JSONDecodeError):
        return None


def read_train_counts(workdir: str) -> tuple[np.ndarray, tuple[str, ...], int] | None:
    """(n[l, d, e], domain names, first step counted) from `routing_train_counts.json`, or None.

    These count every training token routed since `since_step` (the start of the last resumed
    segment): P_{l,d} of what the router did during training, with no trace needed."""
    saved = read_json(os.path.join(workdir, "routing_train_counts.json"))
    if saved is None:
        return None
    counts = np.asarray(saved["counts_layer_domain_expert"], np.float64).round().astype(np.int64)
    return counts, tuple(saved["domains"]), int(saved.get("since_step", 0))

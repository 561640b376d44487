"""Synthetic traces with known answers, shared by the analysis tests."""

import numpy as np

from mixlab.analysis.trace import Trace


def layout(tokens_per_domain: int, num_domains: int, seq_len: int = 16):
    """domain_T, position_T of D domains with `tokens_per_domain` each, in sequences of seq_len."""
    domain_T = np.repeat(np.arange(num_domains), tokens_per_domain)
    position_T = np.tile(np.arange(tokens_per_domain) % seq_len, num_domains)
    return domain_T, position_T


def uniform(
    tokens_per_domain: int = 64, num_domains: int = 4, num_experts: int = 8, layers: int = 1
) -> Trace:
    """A perfectly balanced router: token t goes to experts (2j, 2j + 1), j = t mod E/2, in every domain
    (tokens_per_domain a multiple of E/2), so every expert gets exactly K/E of every domain's tokens."""
    domain_T, position_T = layout(tokens_per_domain, num_domains)
    j_T = np.arange(len(domain_T)) % (num_experts // 2)
    experts_TK = np.stack([2 * j_T, 2 * j_T + 1], axis=1)
    experts_NTK = np.broadcast_to(experts_TK, (layers, *experts_TK.shape))
    return Trace.build(
        experts_NTK,
        np.full(experts_NTK.shape, 0.5),
        domain_T,
        np.arange(len(domain_T)) % 7,
        position_T,
        [f"d{i}" for i in range(num_domains)],
        num_experts,
    )


def specialised(tokens_per_domain: int = 64, num_domains: int = 4, layers: int = 1, names=None) -> Trace:
    """Domain d always routed to experts (2d, 2d + 1), in that rank order; E = 2D; token ids distinct
    per domain (x = 100 d + t mod 5)."""
    domain_T, position_T = layout(tokens_per_domain, num_domains)
    experts_TK = np.stack([2 * domain_T, 2 * domain_T + 1], axis=1)
    experts_NTK = np.broadcast_to(experts_TK, (layers, *experts_TK.shape))
    return Trace.build(
        experts_NTK,
        np.tile([0.7, 0.3], (layers, len(domain_T), 1)),
        domain_T,
        100 * domain_T + np.arange(len(domain_T)) % 5,
        position_T,
        names or [f"d{i}" for i in range(num_domains)],
        2 * num_domains,
    )


def random(
    tokens: int, layers: int, num_experts: int, top_k: int, names, seed: int = 0, vocab: int = 50, seq_len=32
) -> Trace:
    """Random distinct top-k sets (biased per domain so domains differ), random domains in sequences."""
    rng = np.random.default_rng(seed)
    D = len(names)
    domain_T = np.repeat(rng.integers(0, D, tokens // seq_len + 1), seq_len)[:tokens]
    position_T = np.arange(tokens) % seq_len
    logits_DE = rng.normal(size=(layers, D, num_experts)) * 1.5
    scores_NTE = logits_DE[:, domain_T] + rng.gumbel(size=(layers, tokens, num_experts))
    experts_NTK = np.argsort(-scores_NTE, axis=-1)[..., :top_k]
    gates_NTK = rng.dirichlet(np.ones(top_k), size=(layers, tokens))
    return Trace.build(
        experts_NTK, gates_NTK, domain_T, rng.integers(0, vocab, tokens), position_T, names, num_experts
    )

"""Routing metrics of one trace or one count table, vectorised with numpy (formulas: analysis/README.md).

Letters: N MoE layers, T tokens, K experts per token (rank order), E experts, D domains, U distinct
token ids. Counts n[l, d, e] = number of tokens of domain d that layer l sent to expert e.

  P_{l,d}(e) = n / sum_e n                           domain activation distribution
  S_l(d, e)  = n / |T_d|                             specialisation; uniform router: K / E
  H_{l,d}    = -sum_e P log P (nats), exp(H)         routing entropy, effective experts
  dead       = share of experts with n = 0           per layer (all domains) and per domain
  imbalance  = max_e n / mean_e n                    load imbalance
  JSD(P, Q)  = 1/2 KL(P||M) + 1/2 KL(Q||M), M = (P + Q) / 2, in BITS (log2): 0 for identical, 1 max
  J_l(a, b)  = |E^a & E^b| / |E^a | E^b|, E^d = {e : S_l(d, e) > (K / E)(1 + delta)}; undefined (NaN)
               when neither domain has an expert above the threshold
  V_l(x)     = max_e N_l(x, e) / N_l(x), first choice; summarised as the token-weighted mean over the
               tokens of a domain (= mean over its tokens t of V_l(x_t)) and over all tokens
  C_l(i->j)  = N_l(i and j) / N_l(i), all pairs of distinct ranks in the top-k set; 0 on the diagonal
               and in the rows of experts never chosen
  R_l        = mean over consecutive pairs of 1[e1_l(t) = e1_l(t+1)], consecutive = same domain, same
               sequence (position + 1); uniform routing gives 1 / E
"""

from __future__ import annotations

from typing import Any

import numpy as np


def counts(experts_NTK: np.ndarray, domain_T: np.ndarray, num_domains: int, num_experts: int) -> np.ndarray:
    """n[l, d, e] (int64) by one bincount per layer over the combined index d * E + e."""
    N, T, K = experts_NTK.shape
    out = np.empty((N, num_domains, num_experts), np.int64)
    dom_TK = np.broadcast_to(domain_T[:, None].astype(np.int64) * num_experts, (T, K))
    for layer in range(N):
        idx = (dom_TK + experts_NTK[layer]).ravel()
        out[layer] = np.bincount(idx, minlength=num_domains * num_experts).reshape(num_domains, num_experts)
    return out


def _normalise(x: np.ndarray, axis: int = -1) -> np.ndarray:
    total = x.sum(axis=axis, keepdims=True)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(total > 0, x / np.where(total > 0, total, 1), np.nan)


def entropy(p: np.ndarray, axis: int = -1) -> np.ndarray:
    """Shannon entropy in nats along `axis` (0 log 0 = 0; NaN rows stay NaN)."""
    logp = np.log(np.where(p > 0, p, 1.0))
    return -np.sum(p * logp, axis=axis)


def jsd(p: np.ndarray, q: np.ndarray, axis: int = -1) -> np.ndarray:
    """Jensen-Shannon divergence in bits along `axis`: in [0, 1], 0 exactly when p = q."""
    m = 0.5 * (p + q)

    def kl(a):
        ratio = np.where(a > 0, a / np.where(m > 0, m, 1.0), 1.0)
        return np.sum(a * np.log2(ratio), axis=axis)

    return np.maximum(0.5 * kl(p) + 0.5 * kl(q), 0.0)


def imbalance(n: np.ndarray) -> np.ndarray:
    """max_e n / mean_e n along the last axis (NaN where nothing was routed)."""
    mean = n.mean(axis=-1)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(mean > 0, n.max(axis=-1) / np.where(mean > 0, mean, 1), np.nan)


def expert_sets(spec_NDE: np.ndarray, top_k: int, delta: float) -> np.ndarray:
    """E^d as a bool mask [N, D, E]: experts with S_l(d, e) > (K / E)(1 + delta)."""
    baseline = top_k / spec_NDE.shape[-1]
    return np.nan_to_num(spec_NDE, nan=0.0) > baseline * (1.0 + delta)


def overlap(sets_NDE: np.ndarray) -> np.ndarray:
    """J_l(a, b) for every domain pair [N, D, D]; NaN where the union is empty."""
    a = sets_NDE.astype(np.int64)
    inter = np.einsum("nae,nbe->nab", a, a)
    union = a.sum(-1)[:, :, None] + a.sum(-1)[:, None, :] - inter
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(union > 0, inter / np.where(union > 0, union, 1), np.nan)


def count_metrics(counts_NDE: np.ndarray, top_k: int, delta: float = 0.2) -> dict[str, np.ndarray]:
    """Everything that needs only n[l, d, e]: works on a trace's counts and on training-time counts.

    Domains with no tokens have NaN distributions (and NaN in every metric that involves them)."""
    n = counts_NDE.astype(np.float64)
    tokens_D = n[0].sum(-1) / top_k  # every token makes K assignments in every layer
    p_NDE = _normalise(n)
    with np.errstate(invalid="ignore", divide="ignore"):
        spec_NDE = np.where(tokens_D[None, :, None] > 0, n / np.maximum(tokens_D, 1)[None, :, None], np.nan)
    total_NE = n.sum(1)
    p_NE = _normalise(total_NE)
    jsd_NDD = jsd(p_NDE[:, :, None, :], p_NDE[:, None, :, :])
    sets = expert_sets(spec_NDE, top_k, delta)
    present_D = tokens_D > 0
    return {
        "counts_NDE": counts_NDE,
        "top_k": top_k,
        "tokens_D": tokens_D,
        "activation_NDE": p_NDE,
        "specialisation_NDE": spec_NDE,
        "spec_baseline": np.float64(top_k / n.shape[-1]),
        "entropy_ND": entropy(p_NDE),
        "entropy_N": entropy(p_NE),
        "dead_ND": np.where(present_D[None], (n == 0).mean(-1), np.nan),
        "dead_N": (total_NE == 0).mean(-1),
        "imbalance_ND": imbalance(n),
        "imbalance_N": imbalance(total_NE),
        "jsd_NDD": jsd_NDD,
        # A domain without tokens has no expert set: J with it is undefined, not 0.
        "overlap_NDD": np.where(present_D[:, None] & present_D[None, :], overlap(sets), np.nan),
        "expert_sets_NDE": sets,
    }


def vocab_specialisation(
    first_NT: np.ndarray, token_T: np.ndarray, domain_T: np.ndarray, num_domains: int, num_experts: int
) -> tuple[np.ndarray, np.ndarray]:
    """(V overall [N], V per domain [N, D]): token-weighted means of V_l(x) over all tokens / a domain's.

    Small-sample caveat: a token id seen once has V = 1 whatever the router does; the overall mean for a
    uniform router is about E[max of a multinomial] / N_l(x), not 1 / E."""
    _, inv_T = np.unique(token_T, return_inverse=True)
    U = int(inv_T.max()) + 1 if inv_T.size else 0
    tokens_D = np.bincount(domain_T, minlength=num_domains)
    overall, per_domain = np.empty(first_NT.shape[0]), np.empty((first_NT.shape[0], num_domains))
    for layer, first_T in enumerate(first_NT):
        c_UE = np.bincount(inv_T * num_experts + first_T, minlength=U * num_experts).reshape(U, num_experts)
        v_U = c_UE.max(1) / np.maximum(c_UE.sum(1), 1)
        v_T = v_U[inv_T]
        overall[layer] = v_T.mean() if v_T.size else np.nan
        with np.errstate(invalid="ignore", divide="ignore"):
            per_domain[layer] = np.bincount(domain_T, weights=v_T, minlength=num_domains) / tokens_D
    return overall, per_domain


def coactivation(experts_NTK: np.ndarray, num_experts: int) -> np.ndarray:
    """C_l(i -> j) [N, E, E] over every ordered pair of distinct ranks of the top-k set."""
    N, _, K = experts_NTK.shape
    E = num_experts
    out = np.zeros((N, E, E))
    for layer in range(N):
        e_TK = experts_NTK[layer].astype(np.int64)
        n_i = np.bincount(e_TK.ravel(), minlength=E)  # an expert appears at most once per token
        pair = np.zeros(E * E, np.int64)
        for a in range(K):
            for b in range(K):
                if a != b:
                    pair += np.bincount(e_TK[:, a] * E + e_TK[:, b], minlength=E * E)
        with np.errstate(invalid="ignore", divide="ignore"):
            out[layer] = np.where(n_i[:, None] > 0, pair.reshape(E, E) / np.maximum(n_i, 1)[:, None], 0.0)
    return out


def consecutive_same(
    first_NT: np.ndarray, domain_T: np.ndarray, position_T: np.ndarray, num_domains: int
) -> tuple[np.ndarray, np.ndarray]:
    """(R overall [N], R per domain [N, D]) over pairs (t, t+1) in the same sequence."""
    valid = (domain_T[1:] == domain_T[:-1]) & (position_T[1:] == position_T[:-1] + 1)
    dom = domain_T[:-1][valid]
    pairs_D = np.bincount(dom, minlength=num_domains)
    same_NP = first_NT[:, 1:][:, valid] == first_NT[:, :-1][:, valid]
    overall = same_NP.mean(1) if dom.size else np.full(first_NT.shape[0], np.nan)
    with np.errstate(invalid="ignore", divide="ignore"):
        per_domain = np.stack([np.bincount(dom, weights=s, minlength=num_domains) for s in same_NP]) / pairs_D
    return overall, per_domain


def saturation(
    experts_NTK: np.ndarray, final_NTK: np.ndarray, domain_T: np.ndarray, num_domains: int
) -> tuple[np.ndarray, np.ndarray]:
    """Sat_l = mean_x |K^t(x) & K^final(x)| / K, overall [N] and per domain [N, D], on the same tokens."""
    K = experts_NTK.shape[-1]
    inter_NT = (experts_NTK[..., :, None] == final_NTK[..., None, :]).sum((-1, -2)) / K
    tokens_D = np.bincount(domain_T, minlength=num_domains)
    with np.errstate(invalid="ignore", divide="ignore"):
        per_domain = np.stack([np.bincount(domain_T, weights=s, minlength=num_domains) for s in inter_NT])
        per_domain = per_domain / tokens_D
    return inter_NT.mean(1), per_domain


def trace_metrics(trace: Any, delta: float = 0.2) -> dict[str, np.ndarray]:
    """Every single-trace metric of a `trace.Trace`: `count_metrics` of its counts plus the ones that
    need individual tokens (vocabulary specialisation, co-activation, consecutive-token rate)."""
    D, E = trace.num_domains, trace.num_experts
    out = count_metrics(trace.counts_NDE, trace.top_k, delta)
    out["trace"] = trace  # for registered metrics that read individual tokens (registry.py)
    first_NT = trace.experts_NTK[..., 0]
    out["vocab_spec_N"], out["vocab_spec_ND"] = vocab_specialisation(
        first_NT, trace.token_T, trace.domain_T, D, E
    )
    out["coactivation_NEE"] = coactivation(trace.experts_NTK, E)
    out["consecutive_N"], out["consecutive_ND"] = consecutive_same(
        first_NT, trace.domain_T, trace.position_T, D
    )
    return out

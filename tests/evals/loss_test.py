"""Held-out loss and bits-per-byte equal a hand computation from the model's logits."""

import math

import jax
import numpy as np
import pytest
from flax import nnx

from configs import quickstart
from mixlab import data, sharding, train
from mixlab.evals import capability
from mixlab.evals import loss as eval_loss
from mixlab.models import Transformer


@pytest.mark.slow
def test_loss_and_bpb_equal_a_hand_computation():
    c = quickstart.get_config("runlocal")
    c.eval.batch_size, c.eval.num_batches = 2, 2
    setup = train.resolve(c)
    mesh = sharding.make_mesh({"data": 1}, devices=jax.devices()[:1])
    with sharding.use_mesh(mesh):
        model = Transformer(setup.model, rngs=nnx.Rngs(0))
    graphdef, params = nnx.split(model)
    mixture = data.Mixture(("code", "math"), (0.5, 0.5))
    results = eval_loss.evaluate(graphdef, params, c, mixture, setup.tokenizer, mesh)

    for domain in mixture.names:
        nats, tokens, nbytes = [], [], []
        for batch in data.eval_batches(c.data, domain, batch_size=2, num_batches=2):
            with sharding.use_mesh(mesh):
                logits = np.asarray(model(batch["inputs"])[0], np.float64)
            logp = logits - logits.max(-1, keepdims=True)
            logp -= np.log(np.exp(logp).sum(-1, keepdims=True))
            nll = -np.take_along_axis(logp, batch["targets"][..., None], -1)[..., 0]
            mask = batch["loss_mask"]
            nats += list((nll * mask).sum(1))
            tokens += list(mask.sum(1))
            # Byte tokenizer: every id at or above the offset is one UTF-8 byte; eos/pad are not bytes.
            nbytes += list(((batch["targets"] >= setup.tokenizer.offset) & (mask > 0)).sum(1))
        r = results[domain]
        assert r["seq_tokens"] == tokens and r["seq_bytes"] == nbytes
        np.testing.assert_allclose(r["seq_nats"], nats, rtol=1e-5)
        assert r["loss"] == pytest.approx(sum(nats) / sum(tokens), rel=1e-5)
        assert r["bpb"] == pytest.approx(sum(nats) / (math.log(2) * sum(nbytes)), rel=1e-5)
        assert r["tokens"] == sum(tokens) and r["bytes"] == sum(nbytes)

    # The capability table's bpb items: one per sequence, each its own nats over its bytes.
    items = capability.metrics_from(results)["bpb/code"]
    assert len(items) == 4
    code = results["code"]
    want = [n / (math.log(2) * b) for n, b in zip(code["seq_nats"], code["seq_bytes"], strict=True)]
    np.testing.assert_allclose(list(items.values()), want)

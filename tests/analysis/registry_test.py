"""A routing metric registered in one place reaches routing.json, summary.md, the report and
results.csv; the registered metrics equal their `metrics.py` sources."""

import json

import numpy as np
import pytest

from mixlab.analysis import export, metrics, registry
from mixlab.report import markdown, results, routing_summary
from tests.analysis import synthetic_traces


@pytest.fixture
def top1_share(monkeypatch):
    """A new metric, as mixlab/analysis/README.md adds one: the busiest expert's share of a layer's
    assignments (1/E for a balanced router), per layer and per domain, from the raw counts."""

    def fn(m):
        n = m["counts_NDE"].astype(float)
        return n.sum(1).max(-1) / n.sum((1, 2)), n.max(-1) / n.sum(-1)

    metric = registry.Metric("top1_share", "max_e n_e / sum_e n_e", fn, summary=True, label="top-1 share")
    monkeypatch.setitem(registry.METRICS, "top1_share", metric)
    return fn


def specialised_metrics() -> dict:
    tr = synthetic_traces.specialised(tokens_per_domain=64, num_domains=4, layers=2)
    m = metrics.trace_metrics(tr, delta=0.2)
    m["domain_names"] = ["code", "math", "text", "code_text"]
    return m


def test_a_registered_metric_reaches_json_summary_and_report(top1_share, tmp_path):
    m = specialised_metrics()
    layers = export.layers_json(m)
    # Each domain uses two experts equally: its top expert takes half; over 4 domains, 1/8.
    assert layers["0"]["all"]["top1_share"] == pytest.approx(1 / 8)
    assert layers["1"]["domains"]["math"]["top1_share"] == pytest.approx(1 / 2)
    table = export._layer_table(m, ("code", "math"))
    assert "top-1 share" in table[0] and table[2].endswith("| 0.125 |")

    path = tmp_path / "routing" / "seed_0" / "routing.json"
    path.parent.mkdir(parents=True)
    doc = {
        "meta": {"reference": "full"},
        "runs": {"full": {"workdir": "x/full", "steps": {"30": {"layers": layers}}}},
    }
    path.write_text(json.dumps(export.clean(doc)))
    ro = routing_summary.load(str(tmp_path))
    assert ro["seeds"][0]["pair"]["full"]["metrics"]["top1_share"] == pytest.approx(1 / 8)
    text = "\n".join(markdown.routing_section({"routing": ro, "figures": {}}))
    assert "| top-1 share | saturation by step |" in text and "| 0.125 | —" in text
    rows = [r for r in results.routing_rows(ro) if r["metric"] == "top1_share"]
    assert [r["value"] for r in rows] == [pytest.approx(1 / 8)]


def test_registered_metrics_equal_their_sources():
    m = specialised_metrics()
    values = registry.evaluate(m)
    np.testing.assert_allclose(values["effective_experts"][0], np.exp(m["entropy_N"]))
    np.testing.assert_array_equal(values["dead_frac"][1], m["dead_ND"])
    assert values["activation"][0] is None and values["coactivation"][1] is None
    assert [list(s) for s in values["expert_set"][1][0]] == [[0, 1], [2, 3], [4, 5], [6, 7]]
    counts_only = metrics.count_metrics(m["counts_NDE"], m["top_k"])  # training counts: no trace
    assert registry.evaluate(counts_only)["vocab_spec"] == (None, None)


def test_a_name_registers_once():
    with pytest.raises(ValueError, match="'entropy' is registered twice"):
        registry.register("entropy", "again")(lambda m: (None, None))

"""Routing analysis of MoE checkpoints: traces per domain, specialisation, saturation, cross-arm shifts.

trace.py    the trace format (`OUT/<run>/traces_step_<S>.npz`) and training-time counts
collect.py  checkpoint -> trace on the present devices, with per-domain loss and ΔL(r)
masking.py  the forward with each token's top-r experts disabled (expert redundancy)
metrics.py  single-trace and count-table metrics (formulas: README.md here)
compare.py  saturation over a checkpoint series, cross-arm JSD, competition/synergy index
options.py  what an analysis is asked (Options) and holds per run (RunRouting)
analyse.py  the whole analysis -> routing.json, summary.md, plots (written by export.py, plots.py)
"""

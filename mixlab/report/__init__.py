"""The sweep report: `build(sweep_dir)` reads a sweep's runs and routing analysis and writes report.md,
report.json, results.csv and figures/*.png (run by `python -m experiments.report`)."""

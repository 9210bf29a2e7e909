"""One-off studies behind a design decision: run by name, not by `make bench` nor by the tests.

`.venv/bin/python -m benchmarks.studies.<name>` writes `benchmarks/studies/results/<name>.json`.
"""

# The two commands of the README:
#   make demo   set everything up, then run every stage on the demo catalog (finished stages are reused)
#   make test   set everything up, then lint and run the test suite
# Each stage writes its outputs atomically, so make's timestamps tell what is finished.

PY := .venv/bin/python
DATA := data/demo
RUNS := runs/demo

.PHONY: demo test setup setup-bench lint

setup:
	@bash scripts/setup.sh dev

setup-bench:
	@bash scripts/setup.sh dev,bench

test: setup
	.venv/bin/ruff check .
	@# pytest exits 5 when it collects no test; that is not a failure of the code under test.
	$(PY) -m pytest; rc=$$?; if [ $$rc -eq 5 ]; then echo "pytest collected no tests"; exit 0; fi; exit $$rc

demo: setup $(DATA)/manifest.parquet
	@echo "demo: done; see $(DATA)/summary.md"

$(DATA)/manifest.parquet:
	$(PY) -m toycatalog build --preset demo --out $(DATA)

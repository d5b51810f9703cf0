# The two commands of the README:
#   make demo   set everything up, then run every stage on the demo catalog (finished stages are reused) and
#               write runs/demo/report.md
#   make test   set everything up, then lint and run the test suite

PY := .venv/bin/python
DATA := data/demo
RUNS := runs/demo
export HF_HUB_OFFLINE := 1
export TRANSFORMERS_OFFLINE := 1
export WANDB_SILENT := true

.PHONY: demo test setup setup-bench corpus

# "realistic": FluidSynth and a General MIDI soundfont, which the realistic toy catalog and its tests need.
# The named pretrained models (--model musicnn-mtt, ...) are converted from the musicnn wheel into
# $$COLDTAG_HOME/models (default ~/.cache/coldtag/models) once; about a second.
setup:
	@bash scripts/setup.sh dev,cluster,review realistic
	@$(PY) -m tagging pretrained cache >/dev/null

# The real-recording corpus (free game soundtracks from Debian's packages, installed with apt-get) and its
# manifests by album split: what the students were distilled on and are judged on (docs/pretrained.md).
corpus: setup
	$(PY) scripts/real_corpus.py --out data/real

setup-bench:
	@bash scripts/setup.sh dev,cluster,review,bench realistic

test: setup
	.venv/bin/ruff check .
	@# pytest exits 5 when it collects no test; that is not a failure of the code under test.
	$(PY) -m pytest; rc=$$?; if [ $$rc -eq 5 ]; then echo "pytest collected no tests"; exit 0; fi; exit $$rc

# Every stage on the demo catalog (python -m toycatalog demo: stages keyed by their commands and configs, so a
# second run reuses what did not change), then runs/demo/report.md and a short summary.
demo: setup
	$(PY) -m toycatalog demo --data $(DATA) --out $(RUNS)

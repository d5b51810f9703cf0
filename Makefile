# The two commands of the README:
#   make demo   set everything up, then run every stage on the demo catalog (finished stages are reused)
#   make test   set everything up, then lint and run the test suite
# Each stage writes its output file last (or atomically), so make's timestamps tell what is finished.

PY := .venv/bin/python
DATA := data/demo
HELDOUT := data/heldout
RUNS := runs/demo
# The toy's traits that live in time rather than in the average spectrum, which the baseline cannot see.
TEMPORAL := odd_meter triple_meter swing syncopation tempo
export HF_HUB_OFFLINE := 1
export TRANSFORMERS_OFFLINE := 1
export WANDB_SILENT := true

.PHONY: demo test setup setup-bench

# "realistic": FluidSynth and a General MIDI soundfont, which the realistic toy catalog and its tests need.
# The named pretrained models (--model musicnn-mtt, ...) are converted from the musicnn wheel into
# $$COLDTAG_HOME/models (default ~/.cache/coldtag/models) once; about a second.
setup:
	@bash scripts/setup.sh dev,cluster,review realistic
	@$(PY) -m tagging.pretrained cache >/dev/null

setup-bench:
	@bash scripts/setup.sh dev,cluster,review,bench realistic

test: setup
	.venv/bin/ruff check .
	@# pytest exits 5 when it collects no test; that is not a failure of the code under test.
	$(PY) -m pytest; rc=$$?; if [ $$rc -eq 5 ]; then echo "pytest collected no tests"; exit 0; fi; exit $$rc

demo: setup $(RUNS)/tagger/tagger_vs_baseline.md $(RUNS)/tagger/heldout_temporal.md $(RUNS)/multimodal/modalities.md \
      $(RUNS)/recsys/baselines.md $(RUNS)/fusion/table.md $(RUNS)/coldstart_example.json
	@for table in $(RUNS)/tagger/tagger_vs_baseline.md $(RUNS)/tagger/heldout_temporal.md $(RUNS)/multimodal/modalities.md \
	    $(RUNS)/multimodal/modalities_vs_tagger.md $(RUNS)/recsys/baselines.md $(RUNS)/fusion/table.md $(RUNS)/fusion/differences.md; do \
	    echo; echo "== $$table"; cat $$table; done
	@echo; echo "== a cold-start track through the packaged pipeline ($(RUNS)/coldstart_example.json)"
	@cat $(RUNS)/coldstart_example.txt

# 1. The toy catalog: audio, lyrics, covers, labels, listening data.
$(DATA)/manifest.parquet:
	$(PY) -m toycatalog build --preset demo --out $(DATA)

# 2. Collaborative factors on warm tracks, true factors of the cold ones, and the baselines; then the warm
#    tracks dealt by artist between the audio tagger and the fusion stage ($(RUNS)/manifest.parquet): the tagger
#    learns from python -m fusion split's --tagger-share of them, the fusion stage and the multimodal tagger from
#    the features of the others, which the tagger never heard.
$(RUNS)/recsys/baselines.md: $(DATA)/manifest.parquet
	$(PY) -m recsys coldstart --catalog $(DATA) --out $(RUNS)/recsys

$(RUNS)/manifest.parquet: $(RUNS)/recsys/baselines.md
	$(PY) -m fusion split --manifest $(DATA)/manifest.parquet --recsys $(RUNS)/recsys \
	    --artist-col artist_id --out $@

# 3. Audio tagger, and the mean-log-mel baseline it must beat, both on the tagger's share of the tracks.
$(RUNS)/baseline.json: $(RUNS)/manifest.parquet
	$(PY) -m tagging.baseline --manifest $< --out $@

$(RUNS)/tagger/model/model.safetensors: $(RUNS)/manifest.parquet configs/tagger_demo.yaml
	$(PY) train.py fit --config configs/tagger_demo.yaml

$(RUNS)/tagger/test_scores.json: $(RUNS)/tagger/model/model.safetensors
	$(PY) train.py test --config configs/tagger_demo.yaml --ckpt_path $(RUNS)/tagger/checkpoints/best.ckpt

$(RUNS)/tagger/tagger_vs_baseline.md: $(RUNS)/tagger/test_scores.json $(RUNS)/baseline.json
	$(PY) -m tagging.evaluate baseline --tagger $< --baseline $(RUNS)/baseline.json --out $(RUNS)/tagger \
	    --labels $(TEMPORAL)

# The demo test split holds ten odd-meter tracks, half by one artist: too few to tell a real lead from luck.
# A second catalog from another seed (190 new artists, 161 odd-meter tracks) is scored whole, with a
# paired bootstrap of the tagger's lead over the baseline on the temporal traits.
$(HELDOUT)/manifest.parquet:
	$(PY) -m toycatalog build --preset demo --seed 2 --out $(HELDOUT)

$(RUNS)/tagger/heldout_temporal.md: $(RUNS)/tagger/model/model.safetensors $(HELDOUT)/manifest.parquet
	$(PY) scripts/tagger_vs_baseline_ci.py --model $(RUNS)/tagger/model --manifest $(RUNS)/manifest.parquet \
	    --eval-manifest $(HELDOUT)/manifest.parquet \
	    --labels odd_meter triple_meter swing syncopation four_on_the_floor tempo > $@.tmp
	mv $@.tmp $@

# 4. Per-track content features (frozen tagger, lyrics and cover encoders) and the multimodal tagger.
$(RUNS)/features.npz: $(RUNS)/tagger/model/model.safetensors
	$(PY) -m tagging.features --manifest $(DATA)/manifest.parquet --tagger $(RUNS)/tagger/model --out $@

$(RUNS)/multimodal/model/model.safetensors: $(RUNS)/features.npz configs/multimodal_demo.yaml
	$(PY) train.py fit --config configs/multimodal_demo.yaml

$(RUNS)/multimodal/modalities.md: $(RUNS)/multimodal/model/model.safetensors
	$(PY) -m tagging.evaluate modalities --model $(RUNS)/multimodal/model --manifest $(RUNS)/manifest.parquet \
	    --split-column fusion_split --features $(RUNS)/features.npz --out $(RUNS)/multimodal

# 5. Content -> factors: every row of the Oramas, Nieto et al. (2017) ablation, trained on the fusion share of
#    the warm tracks, then the packaged pipeline (the best content row a new track can run) on one cold-test track.
$(RUNS)/fusion/table.md: $(RUNS)/features.npz $(RUNS)/recsys/baselines.md configs/fusion_demo.yaml configs/fusion_audio_demo.yaml
	$(PY) -m fusion ablation --manifest $(RUNS)/manifest.parquet --features $(RUNS)/features.npz \
	    --recsys $(RUNS)/recsys --genome attribute graded --out $(RUNS)/fusion

$(RUNS)/pipeline/pipeline.json: $(RUNS)/fusion/table.md $(RUNS)/multimodal/model/model.safetensors
	$(PY) -m fusion package --tagger $(RUNS)/tagger/model --multimodal $(RUNS)/multimodal/model \
	    --recsys $(RUNS)/recsys --ablation $(RUNS)/fusion --out $(RUNS)/pipeline

$(RUNS)/coldstart_example.json: $(RUNS)/pipeline/pipeline.json
	$(PY) scripts/coldstart_example.py --catalog $(DATA) --pipeline $(RUNS)/pipeline --out $@ \
	    > $(RUNS)/coldstart_example.txt

# Set-up and everyday commands. `make demo` and `make test` work on a fresh machine:
# they create the virtual environment and install everything first.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed-stamp
DEMO   := demo_out

.PHONY: install demo test bench bench-scale bench-full-size lint format clean browser models sample-data

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q torch==2.13.0
	$(BIN)/python -m pip install -q -e '.[dev,models,onnx,bench,dask]'
	touch $(STAMP)

install: $(STAMP)

demo: $(STAMP)
	@echo "Running the bundled multi-label classifier (bundled:cxr_finding_classifier) once on the DICOM files"
	@echo "of sample_data/ and auditing every finding of sample_data/findings.csv (five findings and No Finding,"
	@echo "CheXpert-style labels) by sex, race and sex x race: a summary across findings, the underdiagnosis"
	@echo "rate (No Finding called for a patient with a finding) per group, and the sample gate policy..."
	@$(BIN)/fairaudit audit sample_data/images --model bundled:cxr_finding_classifier \
		--labels sample_data/findings.csv --findings all \
		--demographics sample_data/demographics.csv \
		--attribute sex --attribute race --intersect sex,race \
		--gate fairaudit/policies/example.toml --format html,md,json,junit \
		--out $(DEMO); rc=$$?; \
	if [ -f $(DEMO)/report.md ]; then echo; echo "Per finding (tpr and its worst-served group), from $(DEMO)/report.md:"; \
		sed -n '/^| finding | n | positives/,/^| \*\*macro average/p' $(DEMO)/report.md; echo; \
		echo "Underdiagnosis (No Finding called for a record with a finding) per group:"; \
		sed -n '/^| attribute | group | records with a finding/,/^$$/p' $(DEMO)/report.md; fi; \
	if [ $$rc -eq 1 ]; then echo "The gate did not pass (exit code 1): it failed or was inconclusive, as the verdict above says;"; \
		echo "a CI job would stop the release here. race C (imaged mostly on the portable unit, where effusion"; \
		echo "is a faint haze) is the group to look at: effusion and the underdiagnosis rate."; \
	elif [ $$rc -ne 0 ]; then exit $$rc; \
	else echo "The gate passed (exit code 0); race C (imaged mostly on the portable unit) is the group to look at in the report."; fi
	@echo "Report: $(CURDIR)/$(DEMO)/report.html (also report.md, results.json, junit.xml, manifest.csv, predictions.csv)"

# Headless Chromium for tests/e2e/test_browser.py (Debian's package), installed only when missing.
# Without it (no apt, no sudo) the browser tests are skipped with the reason; the rest still run.
browser:
	@command -v chromium >/dev/null 2>&1 || command -v chromium-browser >/dev/null 2>&1 || { \
		echo "Installing chromium for the browser tests (apt-get)..."; \
		if [ "$$(id -u)" -eq 0 ]; then SUDO=""; else SUDO="sudo"; fi; \
		$$SUDO apt-get update -q && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -q chromium \
			|| echo "warning: could not install chromium; tests/e2e/test_browser.py will be skipped"; }

# pytest-xdist: one test process per CPU (TEST_WORKERS=0 runs them in this process); tests that
# bound time or memory, and the Dask cluster tests, keep to one process each (xdist_group marks).
TEST_WORKERS ?= auto
test: $(STAMP) browser
	$(BIN)/python -m pytest -q -n $(TEST_WORKERS) --dist loadgroup

bench: $(STAMP)
	$(BIN)/python benchmarks/bootstrap_vs_fairlearn.py
	$(BIN)/python benchmarks/dicom_decode.py
	$(BIN)/python benchmarks/inference.py
	$(BIN)/python benchmarks/augment.py
	$(BIN)/python benchmarks/scale_dask.py

# Long (generates up to 50,000 DICOM files in a temporary folder): not part of `make bench`.
bench-scale: $(STAMP)
	$(BIN)/python benchmarks/scale.py --sizes 5000,10000,50000

# Full-size radiographs (issue 25): 400 files of 1024 x 1024, the classifier and the segmenter
# audited beside a torch DataLoader baseline on the same files (benchmarks/README.md).
bench-full-size: $(STAMP)
	$(BIN)/python benchmarks/scale.py --sizes 400 --image-size 1024 --work-dir build/full_size --keep
	$(BIN)/python benchmarks/scale.py --sizes 400 --image-size 1024 --task segmentation --work-dir build/full_size --keep

# The bundled demonstration models (fairaudit/models/bundled/): a larger synthetic cohort
# (seed 1; sample_data/ is seed 0), a finding classifier and a lung-field segmenter trained by
# `fairaudit train` on CPU with fixed seeds, model cards written from their model.json. One torch
# thread: reproducible weights whatever the machine's core count, and two OpenMP threads spin for minutes when
# other processes hold the two cores. The classifier is multi-label (--findings all: one output
# per finding of findings.csv); `make sample-data` then writes its scores into sample_data/.
MODELS_WORK := build/models
MODELS_DEST := fairaudit/models/bundled
MODELS_SOURCE := fairaudit sample-data $(MODELS_WORK)/cohort --n 2000 --size 128 --seed 1
CLF_ARGS := --architecture small_cnn --width 16 --pool max --highpass 3 --input-size 64x64 \
	--epochs 15 --patience 5 --lr 2e-3 --batch-size 32 --bootstrap 200
SEG_ARGS := --architecture unet --width 8 --depth 3 --input-size 64x64 \
	--epochs 10 --patience 3 --lr 2e-3 --batch-size 32 --bootstrap 1000
models: $(STAMP)
	rm -rf $(MODELS_WORK) && mkdir -p $(MODELS_WORK)
	$(BIN)/$(MODELS_SOURCE) -q
	OMP_NUM_THREADS=1 $(BIN)/fairaudit train $(MODELS_WORK)/cohort/images --task classification \
		--demographics $(MODELS_WORK)/cohort/demographics.csv \
		--labels $(MODELS_WORK)/cohort/findings.csv --findings all \
		--attribute race --attribute sex --attribute age_group \
		$(CLF_ARGS) --device cpu --threads 1 --seed 0 \
		--name cxr_finding_classifier --out $(MODELS_WORK)/cxr_finding_classifier
	OMP_NUM_THREADS=1 $(BIN)/fairaudit train $(MODELS_WORK)/cohort/images --task segmentation \
		--demographics $(MODELS_WORK)/cohort/demographics.csv --masks $(MODELS_WORK)/cohort/masks \
		--attribute race --attribute sex --attribute age_group \
		$(SEG_ARGS) --device cpu --threads 1 --seed 0 \
		--name cxr_lung_segmenter --out $(MODELS_WORK)/cxr_lung_segmenter
	$(BIN)/python -m fairaudit.models.card $(MODELS_WORK)/cxr_finding_classifier $(MODELS_WORK)/cxr_lung_segmenter \
		--source "$(MODELS_SOURCE)"
	for m in cxr_finding_classifier cxr_lung_segmenter; do \
		rm -rf $(MODELS_DEST)/$$m && mkdir -p $(MODELS_DEST)/$$m && \
		cp $(MODELS_WORK)/$$m/model.safetensors $(MODELS_WORK)/$$m/model.json \
			$(MODELS_WORK)/$$m/training_log.jsonl $(MODELS_WORK)/$$m/MODEL_CARD.md $(MODELS_DEST)/$$m/; \
	done
	@du -sh $(MODELS_DEST)/*

# sample_data/ (seed 0) with the bundled classifier's per-finding scores in predictions.csv;
# run after `make models`. It replaces sample_data's images, masks, CSVs and README only.
SAMPLE_SOURCE := fairaudit sample-data sample_data --n 320 --size 112 --seed 0 --model bundled:cxr_finding_classifier
sample-data: $(STAMP)
	$(BIN)/$(SAMPLE_SOURCE) --overwrite -q
	@du -sh sample_data

lint: $(STAMP)
	$(BIN)/ruff check fairaudit tests benchmarks
	$(BIN)/ruff format --check fairaudit tests benchmarks

format: $(STAMP)
	$(BIN)/ruff format fairaudit tests benchmarks

clean:
	rm -rf $(VENV) $(DEMO) dist build .pytest_cache

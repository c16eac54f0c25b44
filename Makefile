# Set-up and everyday commands. `make demo` and `make test` work on a fresh machine:
# they create the virtual environment and install everything first.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed-stamp
DEMO   := demo_out

.PHONY: install demo test bench lint format clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q torch==2.13.0
	$(BIN)/python -m pip install -q -e '.[dev,models,onnx,bench]'
	touch $(STAMP)

install: $(STAMP)

demo: $(STAMP)
	@echo "Auditing sample_data/predictions.csv by sex, race and sex x race, with the sample gate..."
	@$(BIN)/fairaudit audit --predictions sample_data/predictions.csv \
		--demographics sample_data/demographics.csv \
		--attribute sex --attribute race --intersect sex,race \
		--gate fairaudit/policies/example.toml --format html,md,json,junit \
		--out $(DEMO); rc=$$?; \
	if [ $$rc -eq 1 ]; then echo "The gate failed: the sample cohort has a planted disparity for race C (exit code 1 is what a CI gate would act on)."; \
	elif [ $$rc -ne 0 ]; then exit $$rc; fi
	@echo "Report: $(CURDIR)/$(DEMO)/report.html (also report.md, results.json, junit.xml, manifest.csv)"

test: $(STAMP)
	$(BIN)/python -m pytest -q

bench: $(STAMP)
	$(BIN)/python benchmarks/bootstrap_vs_fairlearn.py
	$(BIN)/python benchmarks/dicom_decode.py

lint: $(STAMP)
	$(BIN)/ruff check fairaudit tests benchmarks
	$(BIN)/ruff format --check fairaudit tests benchmarks

format: $(STAMP)
	$(BIN)/ruff format fairaudit tests benchmarks

clean:
	rm -rf $(VENV) $(DEMO) dist build .pytest_cache

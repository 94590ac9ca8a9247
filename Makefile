# convlora_lite: the two set-up commands of the README.
#   make run    runs the main job (headless, offline default) into outputs/
#   make test   runs ruff, the unit tests and the notebooks under nbval (smoke preset)
# Both create the local virtual environment .venv when it is missing.

PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed

.PHONY: run test venv clean-venv

$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e ".[dev]"
	touch $(STAMP)

venv: $(STAMP)

run: $(STAMP)
	$(PY) scripts/run_notebooks.py --output-dir outputs

# ruff first (the package, tests, benchmarks and scripts), then the unit tests and the notebooks
# under nbval on the smoke preset, writing their data and runs under .nbval/.
test: $(STAMP)
	$(VENV)/bin/ruff check .
	rm -rf .nbval
	CONVLORA_HEADLESS=1 CONVLORA_PRESET=smoke CONVLORA_DATA_ROOT=$(CURDIR)/.nbval/data CONVLORA_OUTPUT_DIR=$(CURDIR)/.nbval/runs \
	  $(PY) -m pytest -q -n 2 --dist loadfile tests notebooks --nbval-lax --nbval-current-env

clean-venv:
	rm -rf $(VENV)

# convlora_lite: the two set-up commands of the README.
#   make run    runs the main job (headless, offline default) into outputs/
#   make test   runs the unit tests and the notebooks under nbval (smoke preset)
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
	$(PY) -m convlora_lite.main_job --output-dir outputs

test: $(STAMP)
	$(PY) -m pytest -q -n 2 tests

clean-venv:
	rm -rf $(VENV)

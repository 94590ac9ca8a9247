# convlora_lite: the two set-up commands of the README.
#   make run    runs the main job (headless, offline default) into outputs/
#   make test   runs ruff, the unit tests and the notebooks under nbval (smoke preset)
#   make lab    opens JupyterLab on notebooks/ (localhost only, token authentication on)
# Both create the local virtual environment .venv when it is missing (Meta's sam2, a source distribution, first:
# pure Python, without its CUDA extension and without build isolation, README "SAM 2.1").

PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed

.PHONY: run test lab venv clean-venv

$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet torch torchvision setuptools
	SAM2_BUILD_CUDA=0 $(PY) -m pip install --quiet --no-build-isolation "sam2==1.1.0" "antlr4-python3-runtime==4.9.*"
	$(PY) -m pip install --quiet -e ".[dev]"
	touch $(STAMP)

venv: $(STAMP)

run: $(STAMP)
	$(PY) scripts/run_notebooks.py --output-dir outputs --jobs 2

# ruff first (the package, tests, benchmarks and scripts) and actionlint (the GitHub workflows), then the
# unit tests and the notebooks under nbval on the smoke preset, writing their data and runs under .nbval/.
test: $(STAMP)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/actionlint .github/workflows/*.yml
	rm -rf .nbval
	CONVLORA_HEADLESS=1 CONVLORA_PRESET=smoke CONVLORA_DATA_ROOT=$(CURDIR)/.nbval/data CONVLORA_OUTPUT_DIR=$(CURDIR)/.nbval/runs \
	  $(PY) -m pytest -q -n 2 --dist loadfile tests notebooks --nbval-lax --nbval-current-env

# JupyterLab from the project's environment, so its python3 kernel is this venv; it listens on
# 127.0.0.1 only and keeps JupyterLab's token authentication (the URL with the token is printed).
lab: $(STAMP)
	$(VENV)/bin/jupyter lab --ip 127.0.0.1 --notebook-dir notebooks --no-browser $(if $(filter 0,$(shell id -u)),--allow-root)

clean-venv:
	rm -rf $(VENV)

# Two commands set everything up on a fresh machine: `make demo` and `make test`.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
PIP := $(PY) -m pip
BUILD_INPUTS := pyproject.toml constraints.txt setup.py recsys/models/rankers/_walk.c recsys/features/_counts.c
STAMP := $(VENV)/.installed-$(shell cat $(BUILD_INPUTS) | cksum | cut -d' ' -f1)

.PHONY: demo test install lint clean browser

$(STAMP): $(BUILD_INPUTS)
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PIP) install --quiet --upgrade pip
	$(PIP) install --quiet -c constraints.txt torch==2.13.0
	$(PIP) install --quiet -c constraints.txt -e ".[dev,serving,spark,bench,tune]"
	rm -f $(VENV)/.installed-*
	touch $(STAMP)

install: $(STAMP)

demo: $(STAMP)
	$(VENV)/bin/recsys demo

test: $(STAMP) browser
	$(PY) -m pytest -q -p no:cacheprovider --timeout=600

# Headless Chromium for tests/test_dashboard_browser.py (the dashboard at /ui): Debian's chromium and
# chromium-driver, installed when missing if we are root with apt-get; otherwise this says why and that test skips.
browser:
	@if command -v chromium >/dev/null 2>&1 && command -v chromedriver >/dev/null 2>&1; then \
	  echo "browser: chromium and chromedriver found"; \
	elif [ "$$(id -u)" != 0 ] || ! command -v apt-get >/dev/null 2>&1; then \
	  echo "browser: chromium/chromedriver missing and this is not root with apt-get: the dashboard's browser test" \
	       "will skip (install Debian's chromium and chromium-driver to run it)"; \
	elif (apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q chromium chromium-driver) \
	     >/tmp/recsys-browser-install.log 2>&1; then \
	  echo "browser: installed Debian's chromium and chromium-driver"; \
	else \
	  echo "browser: installing chromium and chromium-driver failed (see /tmp/recsys-browser-install.log): the" \
	       "dashboard's browser test will skip"; \
	fi

lint: $(STAMP)
	$(VENV)/bin/ruff check .

clean:
	rm -rf $(VENV) mlruns mlflow.db .pytest_cache

# nbexec-hub developer commands. `make demo` and `make test` do all the set-up.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
CHP := node_modules/.bin/configurable-http-proxy
export PATH := $(CURDIR)/$(VENV)/bin:$(CURDIR)/node_modules/.bin:$(PATH)

.PHONY: demo test lint bench clean

$(STAMP): setup.cfg pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --upgrade pip
	$(PY) -m pip install -e '.[test]'
	# an editable install skips data_files: enable the extension as `pip install` would
	install -D -m 644 jupyter-config/jupyter_server_config.d/nbexec_hub.json \
		$(VENV)/etc/jupyter/jupyter_server_config.d/nbexec_hub.json
	touch $@

$(CHP): package.json
	npm install --no-audit --no-fund
	touch $@

demo: $(STAMP) $(CHP)
	$(PY) hub_config/demo.py

test: $(STAMP) $(CHP)
	$(PY) -m pytest $(PYTEST_ARGS)

lint: $(STAMP)
	$(VENV)/bin/ruff check nbexec_hub tests benchmarks

bench: $(STAMP) $(CHP)
	$(PY) -m benchmarks.run_all

clean:
	rm -rf $(VENV) node_modules build *.egg-info

# `make demo` and `make test` create .venv/ on first use and keep it up to date with pyproject.toml.
PYTHON ?= python3
VENV := .venv
STAMP := $(VENV)/.installed

.PHONY: demo test clean

$(STAMP): pyproject.toml
	test -x $(VENV)/bin/python || $(PYTHON) -m venv $(VENV)
	$(VENV)/bin/python -m pip install --quiet --upgrade pip
	$(VENV)/bin/python -m pip install --quiet -e '.[test,ray]'
	touch $(STAMP)

demo: $(STAMP)
	$(VENV)/bin/streamdiar diarize "$$($(VENV)/bin/python -m streamdiar.samples sample-wav)"

# Tests paced by the wall clock (marked realtime) must have the CPU to themselves: they run
# alone, after the others have run on every core (at most 4 workers, each test file on one so
# that its fixtures load once). Both parts always run; either failing fails `make test`.
test: $(STAMP)
	$(VENV)/bin/python -m pytest -m 'not realtime' -n auto --maxprocesses 4 --dist loadfile; \
	others=$$?; \
	$(VENV)/bin/python -m pytest -m realtime; \
	realtime=$$?; \
	test $$others -eq 0 && test $$realtime -eq 0

clean:
	rm -rf $(VENV)

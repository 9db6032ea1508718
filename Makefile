# Two commands do everything on a fresh machine:
#   make demo   set up, index the Noto emoji sample set, run sample searches, serve the page
#   make test   set up, check the layers, build the docs, run the test suite
#   make docs   build the documentation site into site/ (mkdocs build --strict: a broken link fails)
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
DEMO   ?= demo-data
PORT   ?= 8000
# --strict: every warning (a broken link or anchor, a page missing from the nav) fails the build.
# NO_MKDOCS_2_WARNING silences mkdocs-material's banner about its successor.
MKDOCS := NO_MKDOCS_2_WARNING=1 $(BIN)/mkdocs build --strict
# Tests run on every core (pytest-xdist); a module's tests stay on one worker, so its fixtures are built once.
# The workers share the run's caches (tests/run_caches.py). JOBS=0 runs them in this one process.
JOBS   ?= auto
PYTEST := $(BIN)/pytest -n $(JOBS) --dist loadscope

.PHONY: install demo test test-fast docs eval clean

install: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	scripts/install-system-deps.sh
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[test]'
	touch $@

demo: install
	$(BIN)/imgsearch sample emoji $(DEMO)/emoji
	$(BIN)/imgsearch sample photos $(DEMO)/photos
	$(BIN)/imgsearch index $(DEMO)/emoji --index $(DEMO)/emoji-index
	$(BIN)/imgsearch info --index $(DEMO)/emoji-index
	$(BIN)/imgsearch search --index $(DEMO)/emoji-index -k 5 \
		$(DEMO)/photos/coffee.jpg $(DEMO)/photos/rocket.jpg "$(DEMO)/emoji/Animals & Nature/1f436.png"
	$(BIN)/imgsearch serve --index $(DEMO)/emoji-index --port $(PORT)

test: install
	scripts/install-system-deps.sh --browser --java
	$(BIN)/lint-imports
	$(MKDOCS)
	$(PYTEST)

test-fast: install
	scripts/install-system-deps.sh --browser --java
	$(BIN)/lint-imports
	$(MKDOCS)
	$(PYTEST) -m "not spark and not browser and not slow"

docs: install
	$(MKDOCS)

eval: install
	$(BIN)/python scripts/eval_retrieval.py --work $(DEMO)/eval

clean:
	rm -rf $(VENV) $(DEMO) site *.egg-info

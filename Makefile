# Two commands do everything on a fresh machine:
#   make demo   set up what the demo needs (no test extras), index photos, photo edits and emoji, serve the page
#               opened on a search by the cat photo
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
# test-fast runs one worker more than the cores: many of its tests wait (a loopback server's deadline, a child
# process starting), and the extra worker fills those waits (2 cores: 172 s against 181 s with 2 workers)
FAST_JOBS ?= $(if $(filter auto,$(JOBS)),$(shell echo $$(( $$(nproc) + 1 ))),$(JOBS))

.PHONY: install install-demo demo test test-fast docs eval clean

# Two installs, two stamps: `make test` needs the test extras (pytest, Playwright, Spark, the docs tools);
# `make demo` needs only the package (the emoji come from npm, the photos with scikit-image), so a first
# `make demo` does not download them. `make test` after `make demo` adds the extras to the same venv.
install: $(VENV)/.installed

# setuptools warns on every editable install that a folder named like the package (imgsearch/, which maps the
# repository's folders) could shadow it: true of any checkout, and not the newcomer's concern
QUIET_BUILD := PYTHONWARNINGS=ignore::UserWarning

$(VENV)/.installed: pyproject.toml
	scripts/install-system-deps.sh
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(QUIET_BUILD) $(BIN)/pip install --quiet -e '.[test]'
	touch $@ $(VENV)/.installed-demo

install-demo: $(VENV)/.installed-demo

$(VENV)/.installed-demo: pyproject.toml
	scripts/install-system-deps.sh
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(QUIET_BUILD) $(BIN)/pip install --quiet -e .
	touch $@

# The demo's library: scikit-image's photos, tiles of them with eight edits each (crops, re-encodes, rotations;
# labelled by tile) and the Noto emoji (labelled by category), one folder each: a photo finds photos, an emoji emoji.
# The page opens on a search by the cat photo (/?id=N, N looked up by its path).
demo: install-demo
	$(BIN)/imgsearch sample photos $(DEMO)/library/photos
	$(BIN)/imgsearch sample near-duplicates $(DEMO)/library/photo-edits
	$(BIN)/imgsearch sample emoji $(DEMO)/library/emoji
	$(BIN)/imgsearch index $(DEMO)/library --index $(DEMO)/index
	$(BIN)/imgsearch info --index $(DEMO)/index
	$(BIN)/imgsearch search --index $(DEMO)/index -k 5 \
		$(DEMO)/library/photos/chelsea.jpg $(DEMO)/library/photos/rocket.jpg "$(DEMO)/library/emoji/Animals & Nature/1f436.png"
	@echo "Open http://127.0.0.1:$(PORT)/?id=$$($(BIN)/python scripts/demo_id.py $(DEMO)/index $(DEMO)/library/photos/chelsea.jpg)"
	$(BIN)/imgsearch serve --index $(DEMO)/index --port $(PORT)

# The test runs start hundreds of Python processes (workers, the CLI, spawned pools): they write compiled
# bytecode (and pytest its rewritten test modules) to __pycache__, even where the environment sets
# PYTHONDONTWRITEBYTECODE, so each compiles the project once, not once per process (the fast suite's
# collection: 2.5 s against 5.7 s a worker); on the pytest line only
KEEP_BYTECODE := PYTHONDONTWRITEBYTECODE=

test: install
	scripts/install-system-deps.sh --browser --java
	$(BIN)/lint-imports
	$(MKDOCS)
	$(KEEP_BYTECODE) $(PYTEST)

test-fast: install
	scripts/install-system-deps.sh --browser --java
	$(BIN)/lint-imports
	$(MKDOCS)
	$(KEEP_BYTECODE) $(BIN)/pytest -n $(FAST_JOBS) --dist loadscope -m "not spark and not browser and not slow"

docs: install
	$(MKDOCS)

eval: install
	$(BIN)/python scripts/eval_retrieval.py --work $(DEMO)/eval

clean:
	rm -rf $(VENV) $(DEMO) site *.egg-info

# Two commands do everything on a fresh machine:
#   make demo   set up, index the Noto emoji sample set, run sample searches, serve the page
#   make test   set up, run the test suite
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
DEMO   ?= demo-data
PORT   ?= 8000

.PHONY: install demo test test-fast eval clean

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
	$(BIN)/pytest

test-fast: install
	scripts/install-system-deps.sh --browser --java
	$(BIN)/lint-imports
	$(BIN)/pytest -m "not spark and not browser and not slow"

eval: install
	$(BIN)/python scripts/eval_retrieval.py --work $(DEMO)/eval

clean:
	rm -rf $(VENV) $(DEMO) *.egg-info

"""``python -m imgsearch``: the ``imgsearch`` command."""

from imgsearch.web.cli import main

main()

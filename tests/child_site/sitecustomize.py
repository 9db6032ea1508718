"""Run by Python at start-up in a child process that a test starts with ``tests.helpers.fake_model_env()``:
the tests' fake model (tests/pixel_model.py) joins the backbone registry there too, so an ``imgsearch``
command run as a user runs it opens an index built with the fake, and can build one (``--backbone
pixels-test``).  Children started without that environment know the real models only."""

from imgsearch.indexer.model.backbones import register_backbone
from tests.pixel_model import SPEC

register_backbone(SPEC)

"""Lets the tests run from a checkout without installing the plugin first.

When the plugin is installed (``pip install -e .``) its own package is used
and this does nothing. The ``vaeforge_pm`` fixture comes from vaeforge's own
pytest plugin, which pytest loads automatically once vaeforge is installed.
"""

import importlib.util
import sys
from pathlib import Path

if importlib.util.find_spec("vaeforge_template") is None:
    sys.path.insert(0, str(Path(__file__).parents[1] / "src"))

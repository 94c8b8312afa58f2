"""Stands in for a component module with heavy imports: loaded only when ``fake_heavy`` is built."""

from vaeforge.api import Callback


class HeavyCallback(Callback):
    """Does nothing; importing it is what the tests watch for."""

    def __init__(self, config=None):
        self.config = config

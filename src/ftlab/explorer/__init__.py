"""The explorer: every order of client actions, and every interleaving of concurrent ones."""

from .checker import Checker, Counterexample, Property, Result
from .universe import FtraceModel, UniverseSpec, load_universe, load_universe_text

__all__ = ["Checker", "Counterexample", "Property", "Result", "FtraceModel", "UniverseSpec",
           "load_universe", "load_universe_text"]

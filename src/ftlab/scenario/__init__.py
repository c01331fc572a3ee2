"""Scenario files: what gets attached, in what order, and what gets called (a shell around the model)."""

from .loader import load_scenario, load_scenario_text
from .schema import Scenario

__all__ = ["Scenario", "load_scenario", "load_scenario_text"]

"""The SimPy engine: runs a `pausecast.models.Scenario` and returns the shared result record."""

from .engine import Event, Prediction, predict, simulate

__all__ = ["Event", "Prediction", "predict", "simulate"]

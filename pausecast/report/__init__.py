"""Rendering: the text report, the standard plots, the phase timeline."""

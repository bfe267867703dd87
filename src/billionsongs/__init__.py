"""Billion Songs: song lyrics written by a GPT-2-style model, one fixed song per numeric ID."""

__version__ = "0.1.0"

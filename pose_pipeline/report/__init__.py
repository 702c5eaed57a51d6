"""Plots, skeleton drawings and the experiment summary."""

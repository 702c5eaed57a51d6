"""Utilities with no pose knowledge: atomic outputs, prefetching, devices and processes."""

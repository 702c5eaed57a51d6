"""The built-in synthetic demo dataset, written in the real MPII release format."""

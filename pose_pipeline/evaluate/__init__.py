"""Scoring: PCKh, PCK by torso, OKS AP, ground-truth files, roundtrip, the MPII submission."""

"""Datasets in: annotation formats, images, converted stores, the demo data, training batches."""

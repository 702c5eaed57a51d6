"""Training: the loop, its setup, its state between steps and sessions, its log, its command line."""

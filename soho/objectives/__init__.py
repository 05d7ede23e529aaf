"""Pre-training objectives, one per file; each returns a loss and an accuracy."""

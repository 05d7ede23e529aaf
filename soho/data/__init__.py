"""Data: the embedded generator, readers of the real formats, downloads and WebDataset shards."""

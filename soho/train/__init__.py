"""One training loop for pre-training and fine-tuning, CPU or GPU, single process or torchrun DDP."""

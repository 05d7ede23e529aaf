"""Several processes: DDP through torch.distributed (gloo on CPU)."""

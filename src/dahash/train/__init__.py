"""Training: the head and fine-tune loops, losses, the sampler, checkpoints, gamma."""

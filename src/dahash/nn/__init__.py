"""Networks: backbones, the DAH head, input recipes, augmentation and feature extraction."""

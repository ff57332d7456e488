"""Data: the dataset and weights registry, downloading, the manifest, image decoding, digits, SURF."""

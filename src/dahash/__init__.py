"""dahash: Deep Hashing Network for Unsupervised Domain Adaptation (Venkateswara et al., CVPR 2017).

The library layer: pure Python + torch + numpy. It never imports snakemake, dvc or mlflow and never
reads params.yaml; the stages in ``stages/`` do that.
"""

__version__ = "0.1.0"

"""dcrobench: adversarial robustness of models trained on compressed datasets."""

__version__ = "0.1.0"

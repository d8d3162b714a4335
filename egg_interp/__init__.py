"""egg_interp: Entropy-Gradient Grounding and attribution baselines for vision-language models."""

__version__ = "0.1.0"

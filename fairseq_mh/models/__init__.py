"""Model code: the original Mask-Predict architecture and the adapters that feed the engine."""

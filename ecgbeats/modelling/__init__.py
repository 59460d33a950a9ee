"""LightGBM training, evaluation metrics, baselines and the verified model bundle."""

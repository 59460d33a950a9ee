"""The data layer: MIT-BIH download, the beat procedure, the beat table, splits and fidelity."""

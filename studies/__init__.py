"""Study stages (studies/dvc.yaml): EDA, baselines, ablations and the reports built on them."""

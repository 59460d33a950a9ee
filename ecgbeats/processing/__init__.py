"""Processing before features: imputation of lost samples and augmentation of beat rows, and the
quality check of raw strips."""

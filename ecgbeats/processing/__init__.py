"""Beat-level processing before features: imputation of lost samples and augmentation."""

"""Model inputs: named feature groups and the frozen tsfresh selection."""

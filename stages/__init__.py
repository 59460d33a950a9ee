"""DVC stages: each reads its params, calls the ecgbeats library, and writes its outputs."""

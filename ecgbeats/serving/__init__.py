"""Serving: the HTTP API and batch scoring, both through ``ecgbeats.serving.scoring.Scorer``."""

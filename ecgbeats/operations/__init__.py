"""Running the model: drift monitoring, the metric gate, and where compute runs (local or Dask)."""

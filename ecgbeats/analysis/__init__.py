"""Studies and reports: EDA, data-shift analysis, figures and report rendering."""

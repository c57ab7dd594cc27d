"""Reports: figures and summaries for notebooks and scheduled runs."""

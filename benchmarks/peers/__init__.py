"""The peers' side of each comparison (backtesting.py, nautilus_trader), installed only for benchmarking."""

"""Venues: where orders go. See :mod:`workbench.venues.base` for the interface."""

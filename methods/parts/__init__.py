"""Shared pieces of the algorithms: losses, mixing, EMA teacher, crops, augmented views, ramps, optimisers."""

"""The study runner: trials.py (what an invocation runs and its results folder), ray_tune.py (the
Ray Tune sweep), local.py (the local process pool), progress.py (the one-line status), command.py
(the command line that picks one)."""

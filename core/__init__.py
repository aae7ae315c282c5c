"""What every layer shares and nothing of udalab is imported by: storage (local paths and URIs) and
the on-disk layout of runs, studies and records."""

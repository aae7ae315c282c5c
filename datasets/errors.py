"""Errors of the dataset layer: each names the file or folder and says what to do."""


class DatasetError(Exception):
    """A dataset folder or file is missing, unreadable or holds values outside its encoding."""

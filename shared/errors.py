"""The one error type steps raise for bad input: the CLI prints its message and exits 2."""


class StepError(Exception):
    """Bad input or an unusable environment, with a message naming what is wrong."""

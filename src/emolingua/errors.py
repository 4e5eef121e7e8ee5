"""The errors a user can cause, and can fix.

Everything raised for a user's mistake (a missing manifest, an unknown name, a value out of
range, a model that is not available offline) derives from :class:`EmolinguaError`, so the
command line can print it as one line, ``error: <what>: <why and what to do>``, and exit
with status 2, while a programming error still shows its traceback. Each subclass also
derives from the built-in exception a Python caller would expect, so ``except ValueError``
keeps working.

>>> raise ConfigError("config.yaml: seed: expected an integer, got 'abc'")   # doctest: +SKIP
"""

from __future__ import annotations

__all__ = ["ConfigError", "EmolinguaError", "InputFileError", "NotAvailableError", "UnknownNameError"]


class EmolinguaError(Exception):
    """A mistake in the input or the configuration; its message is the whole story."""


class ConfigError(EmolinguaError, ValueError):
    """A configuration value, option or name that is wrong (unknown, out of range, wrong type)."""


class InputFileError(EmolinguaError, ValueError):
    """A file or folder given by the user that is missing, unreadable or of the wrong kind."""


class NotAvailableError(EmolinguaError, OSError):
    """Something that would have to be downloaded (a hub model) and cannot be had offline."""


class UnknownNameError(EmolinguaError, KeyError):
    """A name (extractor, corpus, model) that is not registered; the message lists the known ones."""

    def __str__(self) -> str:  # KeyError would print the message quoted
        return str(self.args[0]) if self.args else ""

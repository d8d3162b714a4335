"""Error types raised by egg_interp.

Every error a user can trigger with bad input derives from :class:`EggError`, so the CLI
can print one clear line instead of a stack trace from deep inside a library.
"""

from __future__ import annotations


class EggError(Exception):
    """Base class for every error egg_interp raises on purpose."""


class InputError(EggError, ValueError):
    """Bad user input, the one type for it across options, methods, adapters and loaders.

    A missing or unreadable file, an empty question, a box outside the image, an unknown
    method, target, stopping rule or pipeline, a value out of range. Subclasses say which
    kind of input was wrong; ``except InputError`` catches them all.
    """


class UnsupportedModelError(InputError):
    """The checkpoint's architecture has no adapter (the message lists the supported ones)."""


class DegenerateMapError(EggError):
    """A relevance map is all zeros or contains NaN/inf, so it cannot rank anything."""


class DatasetFormatError(InputError):
    """A benchmark file is missing or malformed (the message names the file and the field)."""

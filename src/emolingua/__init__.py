"""emolingua: speech emotion recognition in many languages, above all low-resource ones."""

__version__ = "0.1.0"

"""emolingua: speech emotion recognition in many languages, above all low-resource ones.

>>> from emolingua import pipeline
>>> ser = pipeline("emotion")                                                      # doctest: +SKIP
>>> ser("talk.wav")                                   # [{'label': 'angry', 'score': 0.81}, ...]  # doctest: +SKIP
"""

from typing import Any

__version__ = "0.1.0"
__all__ = ["Pipeline", "__version__", "pipeline"]


def __getattr__(name: str) -> Any:
    # Loaded on first use: `import emolingua` (and the command line's start) stays free of torch.
    if name in ("pipeline", "Pipeline"):
        from emolingua import pipelines

        return getattr(pipelines, name)
    raise AttributeError(f"module 'emolingua' has no attribute {name!r}")

"""Feature extraction: extractors behind one registry, and a crash-safe feature store.

>>> from emolingua.features import get_extractor
>>> ex = get_extractor("whisper-base")                          # doctest: +SKIP
"""

from emolingua.features.base import (
    ExtractorConfig,
    FeatureExtractor,
    Features,
    extractor_names,
    get_extractor,
    pool_frames,
)

__all__ = ["ExtractorConfig", "FeatureExtractor", "Features", "extractor_names", "get_extractor", "pool_frames"]

"""The built-in classical chest CT segmenter (no weights, CPU only).

Body; left and right lungs split into lobes (or upper/lower zones when the fissures cannot be found); trachea and
main bronchi; bones (vertebrae, ribs, sternum, shoulder girdle); heart, aorta, oesophagus and the rest of the
mediastinum; the pleural space as a thin shell; thyroid and breast approximations; the abdomen below the
diaphragm. Classes it looked for and could not find are listed in ``labelmap.meta["not_found"]``; warnings in
``labelmap.meta["notes"]``.
"""

from .segmenter import BuiltinSegmenter

__all__ = ["BuiltinSegmenter"]

"""Labelled CT datasets on disk, read into the vocabulary's names.

Readers for the nnU-Net raw layout (``nnunet.py``) and TotalSegmentator's layout
(``totalseg.py``); label names are mapped into :mod:`inference.vocabulary` by ``names.py`` and
names it does not know are listed, never guessed. ``card.py`` writes the dataset card (cases,
spacings, structures, sources, unknown names) that a model card references. DICOM CT + SEG pairs
are read on the worker side (``worker.datasets``): this package knows no DICOM.
"""

"""The unified CT model: one network that segments by text prompt, detects lesions as boxes and
localises report snippets to slices, with a coarse-to-fine "look closer" pass.

Importing this package imports no torch: ``inference.model.card`` must stay cheap because the
routing task asks for the model version (``checkpoint_version()``) without loading the model.
Modules that need torch (``network``, ``train``, ``predictor``, ``pipeline``...) import it themselves.
"""

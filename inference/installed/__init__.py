"""Models installed from files: cards, import, verification. No torch and no DICOM here.

A site installs a model once with ``ctnode model import PATH --name NAME`` (an nnU-Net v2
trained-model folder or a MONAI bundle, as a folder or a zip). The files are copied under
``<model directory>/installed/NAME/`` beside a card that records where they came from, their
licence and version, the classes they answer, and the sha256 of every file. Nothing is ever
downloaded at run time, and a pickled checkpoint is only unpickled after its sha256 matched the
card (``inference.installed.card.verify_files``).
"""

from inference.installed.card import ModelCard, ModelError, installed_dir, installed_models, load_model_card

__all__ = ["ModelCard", "ModelError", "installed_dir", "installed_models", "load_model_card"]

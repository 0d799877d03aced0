"""Training datasets made from DICOM: CT + SEG pairs read, teacher labels distilled.

Here, not in ``inference.datasets``, because reading DICOM is the worker's job (the import
contract "inference knows no DICOM"); both write the nnU-Net raw layout that
``inference.datasets`` reads and training consumes.
"""

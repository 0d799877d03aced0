"""Read series into HU volumes (LPS affine) and write CT series."""

"""MONAI bundles as pipelines (``bundle:<name>``): segmentation and RetinaNet-style detection."""

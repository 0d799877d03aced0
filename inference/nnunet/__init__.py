"""nnU-Net v2 trained-model folders as pipelines (``nnunet:<name>``, TotalSegmentator)."""

"""Classical (non-model) pipelines; torch-free."""

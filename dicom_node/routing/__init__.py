"""Routing rules: YAML rules validated at load, study manifests, matching."""

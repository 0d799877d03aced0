"""The toys of docs/extending.md: a result kind, a pipeline package. Tests add them the way a site
or a plugin would, so the worked examples cannot rot."""

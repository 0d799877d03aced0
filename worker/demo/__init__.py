"""Demo and synthetic-study code: the embedded demo PACS peers and the synthetic CT study writer.
Never imported by the production path (an import contract says so)."""

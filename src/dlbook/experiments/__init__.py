"""Chapter-level experiments: loops over seeds, settings and models, one module per chapter."""

"""Model families of vaeforge-ternary, one per file."""

"""vaeforge-ternary: VAEs over the 3^9 = 19,683 ternary operations, judged by prior coverage.

Importing this package is cheap; the components live in their own modules
and are imported when the registry is built (see :mod:`vaeforge_ternary.plugin`).
"""

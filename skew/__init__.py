"""Train/serve skew: schema, distribution, feature-value and prediction skew (see skew/check.py).

Nothing heavy is imported here: DuckDB and LightGBM load inside the functions that use them.
"""

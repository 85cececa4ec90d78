"""Seeded demo data: a simulated offer-ranking business with planted incidents."""

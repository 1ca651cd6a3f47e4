"""Recipes: reproducible multi-stage runs built from the training stages (`default_model`: the shipped model)."""

"""Prebuilt recipes, installed as ``tl_radiology.recipes``. Each module defines one flat ``RECIPE`` object."""

"""Datasets: the embedded defaults and the user file formats (ImageFolder, IDX, text, CSV)."""

"""Datasets: annotation records, file readers and the embedded synthetic benchmark."""

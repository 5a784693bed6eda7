"""Datasets on disk (checked on load) and batched view augmentation; registered under "dataset"."""

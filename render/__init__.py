"""Render stage: a song in, a video out."""

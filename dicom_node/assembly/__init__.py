"""Decide when a study is complete: study tracker and sweeper."""

"""Foundations every room may import: the exception hierarchy, settings, the subscription
calendar and optional-dependency checks. Imports nothing else of this project."""

"""Tests of the analytics, quota-alert and notification library."""

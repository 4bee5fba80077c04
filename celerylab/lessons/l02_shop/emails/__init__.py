"""Emails component (lesson 02 autodiscovery example)."""

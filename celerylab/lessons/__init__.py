"""Task modules the lessons import, so worker subprocesses can import the same tasks."""

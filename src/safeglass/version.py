"""The package version, in a kernel module: stages record it without importing the package's front door."""

__version__ = "0.1.0"

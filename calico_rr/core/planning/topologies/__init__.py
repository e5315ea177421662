"""The four route-reflector topologies of the talk, one file each, plus ``auto``."""

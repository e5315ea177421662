"""The pure core: data in, data out, no I/O."""

"""``python -m calico_rr.cli``."""

from calico_rr.cli import main

main()

"""``python -m ragehr.cli``."""

from ragehr.cli import main

main()

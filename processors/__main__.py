"""`python -m processors` is the `pipepulse` command."""

from processors.cli import main

main()

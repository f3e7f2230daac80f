"""``python -m modelyard``: the command line, as the ``modelyard`` script."""

from modelyard.cli.main import main

main()

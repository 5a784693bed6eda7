"""``python -m dimcollapse`` runs the CLI."""

from dimcollapse.cli.main import main

main()

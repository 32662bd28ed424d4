"""``python -m privaudit`` runs the CLI."""

from privaudit.cli import main

main()

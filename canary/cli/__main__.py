"""``python -m canary.cli`` runs the ``canary`` command."""

from canary.cli import main

main()

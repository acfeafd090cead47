"""``python -m nbexec_hub.cli``: the `nbexec` command without its console script."""

from . import main

main()

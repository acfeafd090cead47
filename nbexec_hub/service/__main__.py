"""``python -m nbexec_hub.service``: run the hub service."""

from .app import main

if __name__ == "__main__":
    main()

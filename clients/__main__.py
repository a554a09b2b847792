"""``python -m clients``: the goldtrail command line."""

from clients.cli import main

if __name__ == "__main__":
    main()

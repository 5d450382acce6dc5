"""``python -m synthreg`` is the ``registry`` command."""

from synthreg.cli.app import main

if __name__ == "__main__":
    main()

"""`python -m fhec`: the same as the `fhec` command."""

from fhec.cli import main

if __name__ == "__main__":
    raise SystemExit(main())

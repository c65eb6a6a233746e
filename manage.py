#!/usr/bin/env python3
"""Django's command line for Outbound (the `outbound` script is the same)."""

from outbound.cli import main

if __name__ == "__main__":
    main()

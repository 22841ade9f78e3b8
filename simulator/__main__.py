"""``python -m simulator``: see :mod:`simulator.cli`."""

from simulator.cli import main

if __name__ == "__main__":
    main()

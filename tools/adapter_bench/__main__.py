"""``python -m tools.adapter_bench``: see :mod:`tools.adapter_bench.cli`."""

from tools.adapter_bench.cli import main

if __name__ == "__main__":
    main()

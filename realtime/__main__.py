"""python -m realtime: the command line (realtime.cli), or with --gui the desktop window.

An entry point sits above the packages: --gui is handed to python -m gui from here, so
that realtime itself never imports gui (the layers: models <- realtime <- gui).
"""

import sys


def main(argv: list[str] | None = None) -> int:
    argv = list(argv if argv is not None else sys.argv[1:])
    if "--gui" in argv:
        # the window's own options (--screenshot, --record, ...) are the GUI parser's to read
        from gui.__main__ import main as gui_main

        return gui_main([a for a in argv if a != "--gui"], ignore_unknown=True)
    from realtime.cli import main as cli_main

    return cli_main(argv)


def script() -> None:
    """The installed command's entry point (pyproject.toml), as python -m runs it."""
    from models.signals import exit_quickly

    exit_quickly(main())  # its models closed: no last garbage collection over them


if __name__ == "__main__":
    script()

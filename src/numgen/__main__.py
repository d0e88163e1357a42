"""``python -m numgen ...`` runs the ``numgen`` command; so does ``torchrun ... -m numgen ...``."""

from numgen.cli import run

if __name__ == "__main__":
    run()

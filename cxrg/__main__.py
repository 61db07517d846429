"""`python -m cxrg` (also what `accelerate launch -m cxrg` runs)."""

from cxrg.cli.main import run

if __name__ == "__main__":
    run()

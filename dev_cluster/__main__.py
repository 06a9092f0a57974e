"""`python -m dev_cluster up|down|logs` (the same commands as `gantry dev`)."""

from dev_cluster.cli import dev

if __name__ == "__main__":
    dev()

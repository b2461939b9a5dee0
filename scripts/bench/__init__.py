"""The benchmark of the tap on the simulator: ``python -m scripts.bench`` (see ``__main__``)."""

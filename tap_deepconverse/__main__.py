"""Run the tap with ``python -m tap_deepconverse``."""

from tap_deepconverse.tap import TapDeepConverse

TapDeepConverse.cli()

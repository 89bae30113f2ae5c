"""The registered sparse methods, one file each (a family's baselines share one); importing
this package registers them all."""

from . import baselines, block_mean, hip, quest, stream, stream_density  # noqa: F401

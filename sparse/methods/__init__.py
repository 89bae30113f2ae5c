"""The registered sparse methods, one file each (a family's baselines share one); importing
this package registers them all."""

from . import (  # noqa: F401
    baselines,
    block_mean,
    flexprefill,
    h2o,
    hip,
    knorm,
    minference,
    pyramidkv,
    quest,
    random_evict,
    snapkv,
    stream,
    stream_density,
    streamingllm,
    tova,
    xattention,
)

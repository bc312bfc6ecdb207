"""Phone-side carriers, each turning its wire protocol into ``CallAudio``."""

"""Model-side adapters, one per wire protocol, all speaking ``ModelSession``."""

"""factory5g — the on-premises platform for a 5G fully-connected factory."""

__version__ = "0.1.0"

"""refsync: keeps partner referrals in step between PRMs, CRMs and marketing automation."""

__version__ = "0.1.0"
__all__ = ["__version__"]

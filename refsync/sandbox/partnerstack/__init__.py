"""PartnerStack vendor API v2 emulator: partnerships, leads, deals, customers, transactions."""

from refsync.sandbox.partnerstack.emulator import PartnerStackEmulator

__all__ = ["PartnerStackEmulator"]

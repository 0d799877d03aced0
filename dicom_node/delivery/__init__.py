"""Delivery: C-STORE SCU and STOW-RS to destinations, with confirmation."""

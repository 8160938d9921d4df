"""Transports translate between the hub and a wire protocol; they hold no other logic."""

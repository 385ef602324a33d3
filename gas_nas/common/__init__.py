"""Pieces every layer shares (events, errors, stop requests, output paths); they import no other part of gas_nas."""

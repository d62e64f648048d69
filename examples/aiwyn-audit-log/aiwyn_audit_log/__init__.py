"""An example handler package for the Aiwyn webhook receiver."""

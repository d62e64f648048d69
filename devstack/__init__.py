"""Local development and test stack: starts Redis, the emulator and the service's processes."""

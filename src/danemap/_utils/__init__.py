"""Private helpers shared across danemap subpackages."""

"""Generated from proto/tracker/v1/tracker.proto by ``make proto``; do not edit."""

"""Pure logic: no I/O, no orchestrator, no service client."""

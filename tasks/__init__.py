"""The platform's units of work, one module per stage; pure logic lives in `tasks.core`."""

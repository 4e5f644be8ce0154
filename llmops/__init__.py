"""The platform's command line and the scaffold for new flows; outside the stage packages."""

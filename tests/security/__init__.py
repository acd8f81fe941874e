"""Security and reliability: the HTTP guard, validation, quotas and full disks, safe HTML, sessions, attacks, load."""

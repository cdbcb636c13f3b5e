// Placeholder until the VMM target lands.

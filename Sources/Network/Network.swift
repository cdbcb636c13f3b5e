// Placeholder until the Network target lands.

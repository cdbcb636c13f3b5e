// Placeholder until the VMState target lands.

// Placeholder until the X86 target lands.

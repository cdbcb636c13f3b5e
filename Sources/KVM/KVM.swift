// Placeholder until the KVM target lands.

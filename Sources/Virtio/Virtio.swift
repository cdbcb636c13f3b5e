// Placeholder until the Virtio target lands.

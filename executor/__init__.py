"""The real executor: drives libvirt with the same scenario the simulator predicts."""

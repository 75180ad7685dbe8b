"""The local two-host testbed: namespaced libvirtd hosts, their link, the test guest, lldpad and the
802.1Qbg switch, and running a scenario on them."""

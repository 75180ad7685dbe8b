"""802.1Qbh (VN-Link) on the testbed: an emulated Cisco VIC answering libvirt's port-profile netlink."""

"""IEEE 802.1Qbg VDP: the ECP/VDP wire format, the station side (libvirt's netlink request to lldpad),
the switch emulator (a bridge's VDP state machine and its server) and the faults lldpad shows."""

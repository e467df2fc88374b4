//go:build !linux || 386

package sfu

import (
	"errors"
	"net"
	"net/netip"
)

// sendConn exists on Linux only (sendconn_linux.go; not on 386, where the
// syscall package has no sendto number); elsewhere the media sockets are
// written the runtime's way.
type sendConn struct{ net.PacketConn }

func newSendConn(*net.UDPConn, []netip.Prefix) (*sendConn, error) {
	return nil, errors.New("sfu: lock-free media writes need Linux (not 386)")
}

//go:build !linux

package sfu

import (
	"errors"
	"net"
	"net/netip"
)

// sendConn exists on Linux only (sendconn_linux.go); elsewhere the media
// sockets are written the runtime's way.
type sendConn struct{ net.PacketConn }

func newSendConn(*net.UDPConn, []netip.Prefix) (*sendConn, error) {
	return nil, errors.New("sfu: lock-free media writes need Linux")
}

//go:build !(linux || darwin || dragonfly || freebsd || netbsd || openbsd)

package main

import "io"

// isTerminal cannot tell here, so the first start's secrets go to the
// data directory's file, as for a service.
func isTerminal(io.Writer) bool { return false }

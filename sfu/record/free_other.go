//go:build !linux && !darwin

package record

import "errors"

// FreeBytes is not known on this system: recording refuses to start.
func FreeBytes(dir string) (uint64, error) {
	return 0, errors.New("free disk space unknown on this system")
}

//go:build linux || darwin

package record

import "syscall"

// FreeBytes is the space free for an unprivileged writer in dir's file
// system.
func FreeBytes(dir string) (uint64, error) {
	var st syscall.Statfs_t
	if err := syscall.Statfs(dir, &st); err != nil {
		return 0, err
	}
	return uint64(st.Bavail) * uint64(st.Bsize), nil
}

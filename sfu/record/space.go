package record

import (
	"errors"
	"os"
	"sync"
	"syscall"
)

// A full disk. A write that fails with ENOSPC (or EDQUOT) tells
// Options.OnNoSpace once per run, on a goroutine of its own: the owner
// stops the recording cleanly (Stop waits for the writers, so it cannot
// be called from one). The segments already open are closed with what
// reached the disk and checksummed as they are.

// NoSpace reports whether err is the disk (or the quota) being full.
func NoSpace(err error) bool {
	return errors.Is(err, syscall.ENOSPC) || errors.Is(err, syscall.EDQUOT)
}

// failed is told of a write that failed.
func (r *Recorder) failed(err error) {
	if err == nil || !NoSpace(err) || r.opt.OnNoSpace == nil {
		return
	}
	if r.noSpace.CompareAndSwap(false, true) {
		r.log.Error("recording disk full", "dir", r.dir, "err", err)
		go r.opt.OnNoSpace(err)
	}
}

// stickyFile is a segment's file as the muxer sees it. The first write
// error is kept, and later writes do nothing, instead of the error going
// to the muxer: ebml-go's writing goroutine stops at an error, and the
// next frame handed to it would wait forever (a track writer stuck, and
// with it the recording's Stop). segmentFile.write and close return the
// kept error.
type stickyFile struct {
	f   *os.File
	mu  sync.Mutex
	err error
}

func (s *stickyFile) keep(err error) {
	s.mu.Lock()
	if s.err == nil {
		s.err = err
	}
	s.mu.Unlock()
}

// Err is the first write error, if any.
func (s *stickyFile) Err() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.err
}

func (s *stickyFile) Write(b []byte) (int, error) {
	if s.Err() == nil {
		if _, err := s.f.Write(b); err != nil {
			s.keep(err)
		}
	}
	return len(b), nil
}

func (s *stickyFile) WriteAt(b []byte, off int64) (int, error) {
	if s.Err() == nil {
		if _, err := s.f.WriteAt(b, off); err != nil {
			s.keep(err)
		}
	}
	return len(b), nil
}

func (s *stickyFile) Close() error {
	err := s.f.Close()
	if err != nil {
		s.keep(err)
	}
	return err
}

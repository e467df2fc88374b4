package record

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"
)

// The archive: what the recorders left in a recordings directory, one
// subdirectory per conference with its manifest. Every file the archive
// hands out is one its conference's manifest names; nothing else in the
// directory (nor anything outside it) can be reached by a name.

// ErrNoFile is a file name that no manifest of the conference lists.
var ErrNoFile = errors.New("no such file in the conference's recordings")

// ErrBadName is a conference ID or a file name that is not a plain name
// (empty, a path, or hidden).
var ErrBadName = errors.New("not a plain name")

// Archive is a recordings directory.
type Archive struct {
	Dir string
}

// plainName reports whether s names an entry of one directory: no path,
// no "..", not hidden.
func plainName(s string) bool {
	return s != "" && s == filepath.Base(s) && s[0] != '.' && len(s) <= 255
}

// ConferenceDir is conference's directory in the archive.
func (a Archive) ConferenceDir(conference string) (string, error) {
	if !plainName(conference) {
		return "", fmt.Errorf("record: conference %q: %w", conference, ErrBadName)
	}
	return filepath.Join(a.Dir, conference), nil
}

// Conferences lists the conferences that have a manifest, sorted.
func (a Archive) Conferences() ([]string, error) {
	ents, err := os.ReadDir(a.Dir)
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	var out []string
	for _, e := range ents {
		if !e.IsDir() || !plainName(e.Name()) {
			continue
		}
		if _, err := os.Stat(filepath.Join(a.Dir, e.Name(), ManifestName)); err == nil {
			out = append(out, e.Name())
		}
	}
	return out, nil
}

// Manifest reads conference's manifest (os.ErrNotExist: never recorded,
// or deleted).
func (a Archive) Manifest(conference string) (Manifest, error) {
	dir, err := a.ConferenceDir(conference)
	if err != nil {
		return Manifest{}, err
	}
	return ReadManifest(dir)
}

// MinutesVideos is every rendered minutes video of conference, the whole
// meeting's (MinutesName) and any range's, as their descriptions
// (minutes*.json) say: none when none is rendered. A video being rendered
// has no description yet and is not there. A description naming anything
// but a minutes video (minutes*.mp4) is refused: the renderer writes no
// other name.
func (a Archive) MinutesVideos(conference string) ([]MinutesInfo, error) {
	dir, err := a.ConferenceDir(conference)
	if err != nil {
		return nil, err
	}
	infos, err := MinutesFiles(dir)
	if err != nil {
		return nil, err
	}
	for _, info := range infos {
		if !plainName(info.File) || !strings.HasPrefix(info.File, "minutes") || filepath.Ext(info.File) != ".mp4" {
			return nil, fmt.Errorf("record: a minutes description names %q, not a minutes video", info.File)
		}
	}
	return infos, nil
}

// Segment is a minutes video as an entry of the archive: its file, size,
// checksum and length; a range's starts and ends with it, the whole
// meeting's ends when it was rendered.
func (info MinutesInfo) Segment() Segment {
	end := info.Rendered
	if !info.To.IsZero() {
		end = info.To
	}
	return Segment{File: info.File, Kind: "minutes", Codec: "video/H264", Start: info.From, End: end,
		DurationMS: info.DurationMS, Bytes: info.Bytes, SHA256: info.SHA256}
}

// Open opens one of conference's recorded files, by the name its
// manifest gives it, with the manifest's entry for it: a segment, or
// MinutesName once a render described it in MinutesInfoName. No other
// name opens anything.
func (a Archive) Open(conference, file string) (*os.File, Segment, error) {
	if !plainName(file) {
		return nil, Segment{}, fmt.Errorf("record: file %q: %w", file, ErrBadName)
	}
	m, err := a.Manifest(conference)
	if errors.Is(err, os.ErrNotExist) {
		return nil, Segment{}, ErrNoFile
	}
	if err != nil {
		return nil, Segment{}, err
	}
	var entry Segment
	if i := slices.IndexFunc(m.Segments, func(s Segment) bool { return s.File == file }); i >= 0 {
		entry = m.Segments[i]
	} else if strings.HasPrefix(file, "minutes") {
		infos, err := a.MinutesVideos(conference)
		if err != nil {
			return nil, Segment{}, err
		}
		i := slices.IndexFunc(infos, func(info MinutesInfo) bool { return info.File == file })
		if i < 0 {
			return nil, Segment{}, ErrNoFile
		}
		entry = infos[i].Segment()
	} else {
		return nil, Segment{}, ErrNoFile
	}
	f, err := os.Open(filepath.Join(a.Dir, conference, file))
	if errors.Is(err, os.ErrNotExist) {
		return nil, Segment{}, ErrNoFile
	}
	return f, entry, err
}

// Remove deletes conference's recordings: its whole directory. It
// returns how many files and bytes went.
func (a Archive) Remove(conference string) (files int, bytes int64, err error) {
	dir, err := a.ConferenceDir(conference)
	if err != nil {
		return 0, 0, err
	}
	ents, err := os.ReadDir(dir)
	if errors.Is(err, os.ErrNotExist) {
		return 0, 0, nil
	}
	if err != nil {
		return 0, 0, err
	}
	for _, e := range ents {
		if info, err := e.Info(); err == nil && info.Mode().IsRegular() {
			files++
			bytes += info.Size()
		}
	}
	return files, bytes, os.RemoveAll(dir)
}

// LastEnd is when the manifest's last segment ended, or its last run
// stopped (a run that recorded nothing), whichever is later; zero for an
// empty manifest.
func (m Manifest) LastEnd() time.Time {
	var last time.Time
	for _, s := range m.Segments {
		if s.End.After(last) {
			last = s.End
		}
	}
	for _, r := range m.Runs {
		for _, t := range []time.Time{r.Started, r.Stopped} {
			if t.After(last) {
				last = t
			}
		}
	}
	return last
}

// Bytes is the size of the manifest's segments together.
func (m Manifest) Bytes() int64 {
	var n int64
	for _, s := range m.Segments {
		n += s.Bytes
	}
	return n
}

// Problem is one thing Verify found wrong.
type Problem struct {
	Conference string
	File       string
	What       string
}

func (p Problem) String() string {
	if p.File == "" {
		return p.Conference + ": " + p.What
	}
	return p.Conference + "/" + p.File + ": " + p.What
}

// VerifyReport is what Verify checked and found.
type VerifyReport struct {
	Conferences int
	Files       int   // segments the manifests list
	Good        int   // of those, the ones that match
	Bytes       int64 // the good ones' size
	Problems    []Problem
}

// Verify checks every segment of every manifest, and every rendered
// minutes video (its minutes*.json), against its size and SHA-256, telling
// each problem to problem (nil: none) as it is found.
func (a Archive) Verify(problem func(Problem)) (VerifyReport, error) {
	var rep VerifyReport
	confs, err := a.Conferences()
	if err != nil {
		return rep, err
	}
	add := func(p Problem) {
		rep.Problems = append(rep.Problems, p)
		if problem != nil {
			problem(p)
		}
	}
	for _, c := range confs {
		rep.Conferences++
		m, err := a.Manifest(c)
		if err != nil {
			add(Problem{Conference: c, What: "manifest unreadable: " + err.Error()})
			continue
		}
		files := m.Segments
		if infos, err := a.MinutesVideos(c); err != nil {
			add(Problem{Conference: c, File: MinutesInfoName, What: "unreadable: " + err.Error()})
		} else {
			for _, info := range infos {
				files = append(slices.Clip(files), info.Segment())
			}
		}
		for _, s := range files {
			rep.Files++
			if p, ok := a.verifyFile(c, s); ok {
				rep.Good++
				rep.Bytes += s.Bytes
			} else {
				add(p)
			}
		}
	}
	return rep, nil
}

// verifyFile checks one of conference's files against its entry.
func (a Archive) verifyFile(conference string, s Segment) (Problem, bool) {
	p, says := Problem{Conference: conference, File: s.File}, "the manifest says"
	if s.Kind == "minutes" {
		says = MinutesInfoName + " says"
	}
	if !plainName(s.File) {
		p.What = "not a plain file name"
		return p, false
	}
	sum, size, err := FileSum(filepath.Join(a.Dir, conference, s.File))
	switch {
	case errors.Is(err, os.ErrNotExist):
		p.What = "missing"
	case err != nil:
		p.What = "unreadable: " + err.Error()
	case size != s.Bytes:
		p.What = fmt.Sprintf("%d bytes, %s %d", size, says, s.Bytes)
	case sum != s.SHA256:
		p.What = "SHA-256 " + sum + ", " + says + " " + s.SHA256
	default:
		return p, true
	}
	return p, false
}

// Expired lists the conferences whose recordings ended longer than keep
// before now (their manifest's LastEnd), sorted; none when keep is 0.
// A manifest that cannot be read is left alone.
func (a Archive) Expired(keep time.Duration, now time.Time) ([]string, error) {
	if keep <= 0 {
		return nil, nil
	}
	confs, err := a.Conferences()
	if err != nil {
		return nil, err
	}
	var out []string
	for _, c := range confs {
		m, err := a.Manifest(c)
		if err != nil {
			continue
		}
		if last := m.LastEnd(); !last.IsZero() && now.Sub(last) > keep {
			out = append(out, c)
		}
	}
	return out, nil
}

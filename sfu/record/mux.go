package record

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"strings"

	"github.com/at-wat/ebml-go/mkvcore"
	"github.com/at-wat/ebml-go/webm"
)

// A segment file is Matroska written by ebml-go's block writer: WebM
// (VP8, Opus) or Matroska proper (H.264, which WebM does not allow).
// Cues and the Duration are written when the segment is closed; until
// then the file is a valid stream of clusters with an unknown length,
// which players read up to the last whole cluster.

// codec families the recorder writes.
const (
	familyVP8 = iota + 1
	familyH264
	familyOpus
)

func familyOf(mime string) int {
	switch strings.ToLower(mime) {
	case "video/vp8":
		return familyVP8
	case "video/h264":
		return familyH264
	case "audio/opus":
		return familyOpus
	}
	return 0
}

// errNoParameterSets: an H.264 keyframe without its SPS and PPS, which
// the file's header needs.
var errNoParameterSets = errors.New("record: H.264 keyframe without SPS/PPS")

// cuesReserve is the space kept at the head of a segment for its index
// (a cue per keyframe: a 5-minute segment with a keyframe every few
// seconds needs a few kilobytes).
const cuesReserve = 64 << 10

// segmentFile is one open segment: the file and its block writer.
type segmentFile struct {
	f     *os.File
	file  *stickyFile // f as the muxer writes it: its first error kept
	block webm.BlockWriteCloser
	ext   string
}

// openSegment creates path and writes the header of a one-track file for
// family, whose first frame is first (a keyframe for video: it carries
// the picture size and, for H.264, the parameter sets).
func openSegment(path string, family int, first []byte) (*segmentFile, error) {
	entry := webm.TrackEntry{Name: "track", TrackNumber: 1, TrackUID: 1}
	header := *webm.DefaultEBMLHeader
	switch family {
	case familyVP8:
		w, h, ok := vp8Size(first)
		if !ok {
			return nil, errors.New("record: VP8 segment must start with a keyframe")
		}
		entry.CodecID, entry.TrackType = "V_VP8", 1
		entry.Video = &webm.Video{PixelWidth: uint64(w), PixelHeight: uint64(h)}
	case familyH264:
		sps, pps := parameterSets(first)
		if sps == nil || pps == nil {
			return nil, errNoParameterSets
		}
		w, h := spsSize(sps)
		entry.CodecID, entry.TrackType = "V_MPEG4/ISO/AVC", 1
		entry.CodecPrivate = avcConfig(sps, pps)
		entry.Video = &webm.Video{PixelWidth: uint64(w), PixelHeight: uint64(h)}
		header.DocType = "matroska"
	case familyOpus:
		entry.CodecID, entry.TrackType = "A_OPUS", 2
		entry.CodecPrivate = opusHead()
		entry.Audio = &webm.Audio{SamplingFrequency: 48000, Channels: 2}
	default:
		return nil, errors.New("record: codec not recorded")
	}
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE|os.O_EXCL, 0o640)
	if err != nil {
		return nil, err
	}
	info := &webm.Info{TimecodeScale: 1000000, MuxingApp: "citybridge (ebml-go)", WritingApp: "citybridge"}
	sf := &stickyFile{f: f}
	ws, err := webm.NewSimpleBlockWriter(sf, []webm.TrackEntry{entry},
		mkvcore.WithEBMLHeader(&header), mkvcore.WithSegmentInfo(info),
		mkvcore.WithSeekHead(true), mkvcore.WithCues(cuesReserve),
		// One track per file: no interleaving to sort, so no blocks are held back.
		mkvcore.WithBlockInterceptor(nil),
		mkvcore.WithMaxKeyframeInterval(1, 10_000))
	if err != nil {
		f.Close()
		os.Remove(path)
		return nil, fmt.Errorf("record: segment header: %w", err)
	}
	if err := sf.Err(); err != nil { // the header did not reach the disk
		_ = ws[0].Close()
		os.Remove(path)
		return nil, fmt.Errorf("record: segment header: %w", err)
	}
	return &segmentFile{f: f, file: sf, block: ws[0]}, nil
}

// write adds one frame at ms milliseconds from the segment's start.
func (s *segmentFile) write(keyframe bool, ms int64, frame []byte) error {
	if err := s.file.Err(); err != nil { // an earlier frame's write failed
		return err
	}
	_, err := s.block.Write(keyframe, ms, frame)
	return err
}

// close finishes the file (cues, duration) and makes it durable.
func (s *segmentFile) close() error {
	// The block writer closes the file itself; sync through a second
	// handle afterwards.
	name := s.f.Name()
	err := s.block.Close()
	if e := s.file.Err(); e != nil && err == nil {
		err = e
	}
	if g, e := os.Open(name); e == nil {
		if e := g.Sync(); e != nil && err == nil {
			err = e
		}
		g.Close()
	}
	return err
}

// vp8Size reads a VP8 keyframe's picture size (RFC 6386 9.1).
func vp8Size(frame []byte) (w, h int, ok bool) {
	if len(frame) < 10 || frame[0]&1 != 0 || frame[3] != 0x9d || frame[4] != 0x01 || frame[5] != 0x2a {
		return 0, 0, false
	}
	w = int(binary.LittleEndian.Uint16(frame[6:8]) & 0x3fff)
	h = int(binary.LittleEndian.Uint16(frame[8:10]) & 0x3fff)
	return w, h, w > 0 && h > 0
}

// isKeyframe says whether an assembled frame starts a picture on its own.
func isKeyframe(family int, frame []byte) bool {
	switch family {
	case familyVP8:
		return len(frame) > 0 && frame[0]&1 == 0
	case familyH264:
		for _, n := range nalUnits(frame) {
			if len(n) > 0 && n[0]&0x1f == 5 {
				return true
			}
		}
		return false
	}
	return true // audio: every frame
}

// nalUnits splits an Annex-B stream (what pion's H.264 depacketizer
// gives) into its NAL units.
func nalUnits(b []byte) [][]byte {
	var out [][]byte
	start := -1
	for i := 0; i+3 <= len(b); {
		if b[i] == 0 && b[i+1] == 0 && b[i+2] == 1 {
			if start >= 0 {
				out = append(out, bytes.TrimRight(b[start:i], "\x00"))
			}
			i += 3
			start = i
			continue
		}
		i++
	}
	if start >= 0 && start < len(b) {
		out = append(out, b[start:])
	}
	return out
}

// avcc converts an Annex-B access unit to Matroska's length-prefixed NAL
// units, leaving out access unit delimiters.
func avcc(b []byte) []byte {
	out := make([]byte, 0, len(b)+16)
	for _, n := range nalUnits(b) {
		if len(n) == 0 || n[0]&0x1f == 9 {
			continue
		}
		out = binary.BigEndian.AppendUint32(out, uint32(len(n)))
		out = append(out, n...)
	}
	return out
}

// hasPicture says whether an access unit holds a coded slice.
func hasPicture(b []byte) bool {
	for _, n := range nalUnits(b) {
		if len(n) > 0 && n[0]&0x1f >= 1 && n[0]&0x1f <= 5 {
			return true
		}
	}
	return false
}

func parameterSets(b []byte) (sps, pps []byte) {
	for _, n := range nalUnits(b) {
		switch {
		case len(n) > 3 && n[0]&0x1f == 7 && sps == nil:
			sps = n
		case len(n) > 0 && n[0]&0x1f == 8 && pps == nil:
			pps = n
		}
	}
	return sps, pps
}

// avcConfig is the AVCDecoderConfigurationRecord (ISO 14496-15 5.2.4.1)
// of one SPS and one PPS, with 4-byte NAL lengths.
func avcConfig(sps, pps []byte) []byte {
	out := []byte{1, sps[1], sps[2], sps[3], 0xff, 0xe1}
	out = binary.BigEndian.AppendUint16(out, uint16(len(sps)))
	out = append(out, sps...)
	out = append(out, 1)
	out = binary.BigEndian.AppendUint16(out, uint16(len(pps)))
	return append(out, pps...)
}

// opusHead is the Opus identification header Matroska keeps as codec
// private data (RFC 7845 5.1): two channels, 48 kHz, no pre-skip.
func opusHead() []byte {
	h := []byte("OpusHead")
	h = append(h, 1, 2, 0, 0)
	h = binary.LittleEndian.AppendUint32(h, 48000)
	return append(h, 0, 0, 0)
}

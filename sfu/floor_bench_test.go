package sfu

import (
	"net"
	"testing"

	"github.com/pion/rtp"
	"github.com/pion/srtp/v3"
	"golang.org/x/net/ipv4"
)

// BenchmarkSRTPSendFloor is the physical floor of one forwarded packet on
// this machine: SRTP-protect a 1,180-byte RTP packet and send it to a
// loopback socket, which every copy the SFU writes costs whatever its own
// loop does. Sub-benchmarks: the two SRTP profiles the SFU offers
// (AES-128-GCM first), protection alone, and the send alone, one by one
// and in sendmmsg batches of 32 (golang.org/x/net/ipv4 WriteBatch).
// bench/RESULTS.md sets it beside BenchmarkForwardPacket.
func BenchmarkSRTPSendFloor(b *testing.B) {
	payload := make([]byte, 1180-12)
	hdr := rtp.Header{Version: 2, PayloadType: 96, SSRC: 0x1234abcd, Timestamp: 90000}
	profiles := []struct {
		name string
		p    srtp.ProtectionProfile
	}{{"gcm", srtp.ProtectionProfileAeadAes128Gcm}, {"cm-hmac-sha1-80", srtp.ProtectionProfileAes128CmHmacSha1_80}}
	newCtx := func(b *testing.B, p srtp.ProtectionProfile) *srtp.Context {
		kl, _ := p.KeyLen()
		sl, _ := p.SaltLen()
		ctx, err := srtp.CreateContext(make([]byte, kl), make([]byte, sl), p)
		if err != nil {
			b.Fatal(err)
		}
		return ctx
	}
	sink := func(b *testing.B) (*net.UDPConn, *net.UDPAddr) {
		rx, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
		if err != nil {
			b.Fatal(err)
		}
		b.Cleanup(func() { _ = rx.Close() })
		tx, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
		if err != nil {
			b.Fatal(err)
		}
		b.Cleanup(func() { _ = tx.Close() })
		// Nobody reads: the kernel drops what overflows the receive
		// buffer after the send has been paid for.
		return tx, rx.LocalAddr().(*net.UDPAddr)
	}
	for _, pr := range profiles {
		b.Run("protect-"+pr.name, func(b *testing.B) {
			ctx := newCtx(b, pr.p)
			dst := make([]byte, 0, 1500)
			b.SetBytes(int64(len(payload)))
			b.ReportAllocs()
			for i := 0; b.Loop(); i++ {
				hdr.SequenceNumber = uint16(i)
				var err error
				if dst, err = ctx.EncryptRTP(dst[:0], payload, &hdr); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
	b.Run("send", func(b *testing.B) {
		tx, to := sink(b)
		pkt := make([]byte, 1180+16)
		b.ReportAllocs()
		for b.Loop() {
			if _, err := tx.WriteToUDP(pkt, to); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("send-batch32", func(b *testing.B) {
		tx, to := sink(b)
		pc := ipv4.NewPacketConn(tx)
		msgs := make([]ipv4.Message, 32)
		for i := range msgs {
			msgs[i] = ipv4.Message{Buffers: [][]byte{make([]byte, 1180+16)}, Addr: to}
		}
		b.ReportAllocs()
		for b.Loop() {
			n, err := pc.WriteBatch(msgs, 0)
			if err != nil || n != len(msgs) {
				b.Fatal(n, err)
			}
		}
		b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*len(msgs)), "ns/packet")
	})
	for _, pr := range profiles {
		b.Run("protect+send-"+pr.name, func(b *testing.B) {
			ctx := newCtx(b, pr.p)
			tx, to := sink(b)
			dst := make([]byte, 0, 1500)
			b.ReportAllocs()
			for i := 0; b.Loop(); i++ {
				hdr.SequenceNumber = uint16(i)
				var err error
				if dst, err = ctx.EncryptRTP(dst[:0], payload, &hdr); err != nil {
					b.Fatal(err)
				}
				if _, err := tx.WriteToUDP(dst, to); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

package sfu

import (
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/pion/sdp/v3"
	"github.com/pion/webrtc/v4"
)

// WHIP and WHEP clients (RFC 9725 and its egress twin) negotiate once, by
// HTTP: the client offers, the answer carries every candidate (there is no
// server-to-client trickle), and the server never offers. A peer made with
// PeerOptions.ClientOffers never sends offers on its subscribing
// connection: its down tracks are fixed when AnswerSubscriber answers the
// client's offer.

// ErrGathering: the SFU's candidates were not gathered in time for an
// answer that must carry them all.
var ErrGathering = errors.New("sfu: ICE gathering did not complete")

// gatherTimeout bounds the wait for the SFU's own candidates (host
// candidates on the shared sockets: milliseconds).
const gatherTimeout = 3 * time.Second

// ValidateOffer checks that an HTTP client's offer is within the limits and
// parses as SDP with media, before anything is done with it (a bad offer
// must not replace a bridge's working session).
func ValidateOffer(offer string) error {
	if err := checkOffer(offer); err != nil {
		return err
	}
	var parsed sdp.SessionDescription
	if err := parsed.UnmarshalString(offer); err != nil {
		return fmt.Errorf("%w: %v", ErrNotOffer, err)
	}
	if len(parsed.MediaDescriptions) == 0 {
		return fmt.Errorf("%w: no media section", ErrNotOffer)
	}
	return nil
}

// AcceptOfferGathered is AcceptOffer for a WHIP client: the answer carries
// the SFU's candidates.
func (p *Peer) AcceptOfferGathered(offer string) (string, error) {
	pc := p.pubPC()
	done := webrtc.GatheringCompletePromise(pc)
	if _, err := p.AcceptOffer(offer); err != nil {
		return "", err
	}
	return waitGathered(pc, done)
}

// AnswerSubscriber answers a WHEP client's offer on the subscribing
// connection: its receive-only media sections are matched with the down
// tracks the peer has by kind, in the order they were subscribed. Tracks
// beyond the offer's sections are never sent.
func (p *Peer) AnswerSubscriber(offer string) (string, error) {
	if err := checkOffer(offer); err != nil {
		return "", err
	}
	p.mu.Lock()
	if !p.clientOffers {
		p.mu.Unlock()
		return "", errors.New("sfu: the peer's subscriptions are negotiated by the SFU's offers")
	}
	p.mu.Unlock()
	done := webrtc.GatheringCompletePromise(p.sub)
	if err := p.sub.SetRemoteDescription(webrtc.SessionDescription{Type: webrtc.SDPTypeOffer, SDP: offer}); err != nil {
		return "", fmt.Errorf("%w: %v", ErrNotOffer, err)
	}
	answer, err := p.sub.CreateAnswer(nil)
	if err != nil {
		return "", err
	}
	if err := p.sub.SetLocalDescription(answer); err != nil {
		return "", err
	}
	return waitGathered(p.sub, done)
}

func waitGathered(pc *webrtc.PeerConnection, done <-chan struct{}) (string, error) {
	select {
	case <-done:
	case <-time.After(gatherTimeout):
		return "", ErrGathering
	}
	return pc.LocalDescription().SDP, nil
}

// RestartClientICE applies a WHIP/WHEP client's ICE restart (RFC 9725
// §4.4): its new ufrag and pwd, and any candidates, as a fragment of SDP.
// The connection is renegotiated with the same offer under the new
// credentials, and the SFU's new credentials and candidates come back as a
// fragment. pc is the connection the client negotiated.
func (p *Peer) RestartClientICE(pc PC, frag string) (string, error) {
	conn := p.pubPC()
	if pc == Subscribe {
		conn = p.sub
	}
	remote := conn.RemoteDescription()
	if remote == nil {
		return "", errors.New("sfu: nothing negotiated yet")
	}
	ufrag, pwd, cands := parseFragment(frag)
	if ufrag == "" || pwd == "" {
		return "", fmt.Errorf("%w: the fragment has no ice-ufrag and ice-pwd", ErrNotOffer)
	}
	var parsed sdp.SessionDescription
	if err := parsed.UnmarshalString(remote.SDP); err != nil {
		return "", err
	}
	setICE := func(attrs []sdp.Attribute) []sdp.Attribute {
		out := attrs[:0]
		for _, a := range attrs {
			switch a.Key {
			case "ice-ufrag", "ice-pwd", "candidate", "end-of-candidates":
				continue
			}
			out = append(out, a)
		}
		return out
	}
	parsed.Attributes = setICE(parsed.Attributes)
	for i, m := range parsed.MediaDescriptions {
		m.Attributes = setICE(m.Attributes)
		m.Attributes = append(m.Attributes, sdp.NewAttribute("ice-ufrag", ufrag), sdp.NewAttribute("ice-pwd", pwd))
		if i == 0 {
			for _, c := range cands {
				m.Attributes = append(m.Attributes, sdp.NewAttribute("candidate", c))
			}
		}
	}
	b, err := parsed.Marshal()
	if err != nil {
		return "", err
	}
	var prev string
	if ld := conn.LocalDescription(); ld != nil {
		prev = ld.SDP
	}
	done := webrtc.GatheringCompletePromise(conn)
	if err := conn.SetRemoteDescription(webrtc.SessionDescription{Type: webrtc.SDPTypeOffer, SDP: string(b)}); err != nil {
		return "", fmt.Errorf("%w: %v", ErrNotOffer, err)
	}
	answer, err := conn.CreateAnswer(nil)
	if err != nil {
		return "", err
	}
	if err := conn.SetLocalDescription(answer); err != nil {
		return "", err
	}
	local, err := waitGathered(conn, done)
	if err != nil {
		return "", err
	}
	frag = answerFragment(local)
	if !strings.Contains(frag, "a=candidate:") {
		// The sockets are shared and did not move: the candidates gathered
		// for the first answer stand, under the new credentials.
		for _, line := range strings.Split(answerFragment(prev), "\r\n") {
			if strings.HasPrefix(line, "a=candidate:") {
				frag += line + "\r\n"
			}
		}
	}
	return frag, nil
}

// AddClientCandidates adds a WHIP/WHEP client's trickled candidates (a
// fragment of SDP without new credentials).
func (p *Peer) AddClientCandidates(pc PC, frag string) error {
	_, _, cands := parseFragment(frag)
	for _, c := range cands {
		if err := p.AddCandidate(pc, webrtc.ICECandidateInit{Candidate: c}); err != nil {
			return err
		}
	}
	return nil
}

// parseFragment reads the ICE credentials and candidates out of an
// application/trickle-ice-sdpfrag body.
func parseFragment(frag string) (ufrag, pwd string, cands []string) {
	for _, line := range strings.Split(frag, "\n") {
		line = strings.TrimSpace(line)
		switch {
		case strings.HasPrefix(line, "a=ice-ufrag:"):
			ufrag = strings.TrimPrefix(line, "a=ice-ufrag:")
		case strings.HasPrefix(line, "a=ice-pwd:"):
			pwd = strings.TrimPrefix(line, "a=ice-pwd:")
		case strings.HasPrefix(line, "a=candidate:"):
			cands = append(cands, strings.TrimPrefix(line, "a="))
		}
	}
	return ufrag, pwd, cands
}

// answerFragment is the SFU's side of an ICE restart: its new credentials
// and candidates.
func answerFragment(local string) string {
	var b strings.Builder
	seen := map[string]bool{}
	for _, line := range strings.Split(local, "\n") {
		line = strings.TrimSpace(line)
		if strings.HasPrefix(line, "a=ice-ufrag:") || strings.HasPrefix(line, "a=ice-pwd:") || strings.HasPrefix(line, "a=candidate:") {
			if !seen[line] {
				seen[line] = true
				b.WriteString(line + "\r\n")
			}
		}
	}
	return b.String()
}

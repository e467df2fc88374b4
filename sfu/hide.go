package sfu

// Hidden reports whether the subscriber does not show this video
// (SetMaxLayer(LayerOff)): nothing of it is forwarded.
func (d *DownTrack) Hidden() bool { return d.hidden.Load() }

// showOrHide follows a video down track's cap in and out of LayerOff (the
// subscriber scrolled it out of sight, or back). Hiding stops the video at
// once and forgets the allocator's state for it, so that a hidden track
// costs nothing, takes no part in probes, is never resumed by the
// allocator and asks for no keyframe (a subscriber's own PLI for it is
// not passed on either: it has no layer). Shown again, it starts over as
// a new subscription: at its lowest layer, from the packet cache's
// keyframe or at the next one asked for. It returns the event to tell the
// subscriber when the track was hidden. allocMu is held.
func (p *Peer) showOrHide(d *DownTrack, estimate int) (LayerEvent, bool) {
	off := d.maxLayer.Load() == LayerOff
	if off == d.hidden.Load() {
		return LayerEvent{}, false
	}
	d.hidden.Store(off)
	wasLayer := d.allocLayer
	d.paused.Store(false)
	d.allocLayer, d.allocReason = noLayer, ""
	d.belowSince, d.pausedAt, d.takenFrom = 0, 0, noLayer
	if !off {
		// It takes back from what hidden tracks freed what it will cost at
		// its lowest layer: scrolling to and fro frees nothing.
		for _, r := range d.track.layerRates() {
			if r > 0 {
				p.as.freed = max(p.as.freed-r, 0)
				break
			}
		}
		p.log.Debug("video shown", "track", d.id)
		return LayerEvent{}, false
	}
	if wasLayer != noLayer {
		p.as.freed += d.rateBits // the link carried it: a paused track may have it (resumeIntoFreed)
	}
	d.pause()
	d.allocReason = ReasonHidden
	p.log.Debug("video hidden", "track", d.id)
	return LayerEvent{Track: d.id, Publisher: d.streamID, Layer: noLayer, Reason: ReasonHidden, Estimate: estimate}, true
}

// LayerCap is what a subscriber may receive of one video down track: the
// highest simulcast layer (LayerOff: nothing) and the highest VP8
// temporal layer (AllTemporal: every frame).
type LayerCap struct {
	Down     *DownTrack
	Layer    int
	Temporal int
}

// SetCaps applies several of the peer's down tracks' caps and then
// re-allocates once: a host scrolling a wall of 116 rooms changes dozens
// at a time, and SetMaxLayer would re-allocate for each.
func (p *Peer) SetCaps(caps []LayerCap) {
	for _, c := range caps {
		c.Down.maxLayer.Store(int32(max(c.Layer, LayerOff)))
		c.Down.SetMaxTemporal(c.Temporal)
	}
	p.allocate()
}

// resumeIntoFreed says whether a track paused for lack of bandwidth may
// come back now at its lowest layer (returned), planned as want, without
// a probe:
// when tracks hidden since the link last showed congestion carried at
// least that much (a host scrolling away from tiles gives their bandwidth
// to the tiles it shows, which may have been paused while the console
// was still receiving every room). It takes the layer's rate from what
// they freed. allocMu is held.
func (p *Peer) resumeIntoFreed(t *allocTrack, want int) (int, bool) {
	low, ok := t.lowest()
	if t.cur != noLayer || !ok || want < low || p.as.freed < t.rates[low] {
		return 0, false
	}
	p.as.freed -= t.rates[low]
	return low, true
}

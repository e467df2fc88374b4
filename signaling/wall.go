package signaling

import (
	"errors"
	"strconv"

	"citybridge/controlplane"
	"citybridge/sfu"
	"citybridge/signaling/wire"

	"github.com/pion/webrtc/v4"
)

// The host's wall receives what it shows (issue 24). The console says
// which tiles are on screen and how large (a "wall" message as the host
// scrolls, changes the tile size or hides the page); the server forwards
// the video of those rooms only, each at the layer that fits its tile,
// and nothing of the others: their subscriptions stay (no renegotiation
// while scrolling; the tile keeps its name, state, link colour and last
// frame), their down tracks are hidden (sfu.LayerOff), and their
// publishers are asked for no keyframe on the host's behalf. The floor
// holder (at the best layer, every frame) and the active speaker are
// received whatever the wall shows. A console that never says (an older
// page, the synthetic hub) is sent every room, as before.
//
// Every wall tile but the floor holder's is thinned to a thumbnail's frame
// rate: VP8 temporal layers 0 and 1 (wallTemporal), 15 frames a second of
// Chromium's 30 (sfu/temporal.go).

// wallTemporal is the highest VP8 temporal layer a wall tile receives.
const wallTemporal = 1

// wallView is what a host console shows: by bridge, the layer that fits
// its tile. A nil view: the console has not said, every room is shown.
type wallView map[string]int

// Tile sizes up to which a layer is enough, in device pixels: a room's
// lowest layer is 320x180 (its 640x360 camera halved), the next 640x360.
// A tile a quarter larger than a layer still shows it well.
const (
	lowTileWidth, lowTileHeight = 400, 225
	midTileWidth, midTileHeight = 800, 450
)

// tileLayer is the lowest layer that fills a tile of w x h pixels.
func tileLayer(w, h int) int {
	switch {
	case w <= lowTileWidth && h <= lowTileHeight:
		return sfu.LayerLow
	case w <= midTileWidth && h <= midTileHeight:
		return sfu.LayerMid
	}
	return sfu.LayerHigh
}

// errNotHost: only the host console has a wall.
var errNotHost = errors.New("only the host console has a wall")

// showWall takes the host console's wall message: checked whole before
// anything changes (a bad one is refused with its reason and the view
// stays as it was), then the host's subscriptions follow it.
func (ss *session) showWall(w *wire.Wall) {
	if ss.adm.Role != controlplane.RoleHost {
		ss.sendError(wire.CodeForbidden, errNotHost.Error(), wire.TypeWall)
		return
	}
	if err := w.Check(); err != nil {
		ss.sendError(wire.CodeBadMessage, err.Error(), wire.TypeWall)
		return
	}
	view := make(wallView, len(w.Tiles))
	for _, t := range w.Tiles {
		if !ss.conf.invited(t.Bridge) {
			ss.sendError(wire.CodeUnknownBridge, "no such bridge in this conference: "+strconv.Quote(t.Bridge), wire.TypeWall)
			return
		}
		view[t.Bridge] = tileLayer(t.Width, t.Height)
	}
	ss.conf.setWall(ss, view)
}

// setWall records what ss's console shows and brings its subscriptions in
// line.
func (c *conference) setWall(ss *session, view wallView) {
	c.mu.Lock()
	m := c.members[ss.adm.Bridge.ID]
	if m == nil || m.ss != ss {
		c.mu.Unlock()
		return
	}
	m.wall = view
	c.mu.Unlock()
	ss.log.Debug("wall", "tiles_shown", len(view))
	c.reconcile(m)
}

// wallLayer is the layer cap of room pub's video on m's wall (pub does not
// hold the floor): the layer that fits its tile when on screen, the
// lowest for the active speaker, none otherwise; the lowest for every room
// when the console has not said what it shows.
func (c *conference) wallLayer(m *member, pub string) int {
	c.mu.Lock()
	defer c.mu.Unlock()
	if m.wall == nil {
		return sfu.LayerLow
	}
	if l, shown := m.wall[pub]; shown {
		return l
	}
	if pub == c.speaker {
		return sfu.LayerLow
	}
	return sfu.LayerOff
}

// temporal is the highest VP8 temporal layer m receives of video track t:
// a thumbnail's rate for the rooms on the host's wall, every frame for
// the floor holder and for everything else.
func (c *conference) temporal(m *member, t *sfu.Track) int {
	pub := t.PublisherID()
	if t.Kind() != webrtc.RTPCodecTypeVideo || m.ss.adm.Role != controlplane.RoleHost ||
		pub == controlplane.HubBridge.ID || pub == m.peer.ID() {
		return sfu.AllTemporal
	}
	c.mu.Lock()
	holder := c.holder
	c.mu.Unlock()
	if pub == holder {
		return sfu.AllTemporal
	}
	return wallTemporal
}

package sfu

import (
	"errors"
	"fmt"
	"log/slog"
	"net"
	"slices"
	"sync"
	"time"

	"github.com/pion/turn/v5"
)

// TURNConfig sets up the embedded TURN server: the relay for terminals
// behind a NAT or a firewall that lets them reach only one port.
type TURNConfig struct {
	// PacketConns carry TURN over UDP (the TURN port).
	PacketConns []net.PacketConn
	// Listeners carry TURN over TCP and over TLS, already decrypted (the
	// TURN port's TCP side, FrontDoor.TURN()).
	Listeners []net.Listener
	// RelayIP is the address relayed candidates are announced at. The SFU
	// receives relayed media from it, so it must be an address of this
	// host that the SFU can reach (the first --public-ip, usually).
	RelayIP net.IP
	// Peers says which addresses a relay may send to, and MediaPorts the
	// UDP ports it may send to there (the SFU's media sockets). Nil refuses all: the relay
	// exists to reach this server's own media port, never to open a path
	// into the rest of the network. Relays over TCP (RFC 6062) are not
	// offered at all.
	Peers      func(net.IP) bool
	MediaPorts []int
	// Secret checks the time-limited credentials (TURN REST scheme) that
	// the signaling service hands to pages; see TURNCredentials.
	Secret string
	// Realm is the TURN realm (default "citybridge").
	Realm string
	// MaxAllocationsPerUser bounds one credential's relays (default 24:
	// a page allocates one per TURN URL and peer connection, 8 with the
	// embedded server's four URLs, and as many again while an ICE restart
	// replaces them).
	MaxAllocationsPerUser int
	Logger                *slog.Logger
}

// TURNServer is the embedded relay.
type TURNServer struct {
	srv   *turn.Server
	log   *slog.Logger
	quota *relayQuota
}

// relayQuota counts each credential's relays. The check and the count
// are one step (reserve): a burst of allocations over many connections at
// once cannot all pass the check before the first is counted. A
// reservation becomes a relay when pion reports the allocation created,
// and lapses after reserveFor if the allocation failed after the check.
type relayQuota struct {
	max int

	mu      sync.Mutex
	live    map[string]int         // created relays per credential user
	pending map[string][]time.Time // reservations not yet created
}

const reserveFor = 5 * time.Second

func newRelayQuota(max int) *relayQuota {
	return &relayQuota{max: max, live: map[string]int{}, pending: map[string][]time.Time{}}
}

// reserve takes one of user's relays, if it has one left.
func (q *relayQuota) reserve(user string, now time.Time) bool {
	q.mu.Lock()
	defer q.mu.Unlock()
	p := slices.DeleteFunc(q.pending[user], func(t time.Time) bool { return now.Sub(t) >= reserveFor })
	if q.live[user]+len(p) >= q.max {
		q.setPending(user, p)
		return false
	}
	q.setPending(user, append(p, now))
	return true
}

func (q *relayQuota) setPending(user string, p []time.Time) {
	if len(p) == 0 {
		delete(q.pending, user)
	} else {
		q.pending[user] = p
	}
}

// created turns the oldest of user's reservations into a relay.
func (q *relayQuota) created(user string) {
	q.mu.Lock()
	defer q.mu.Unlock()
	q.live[user]++
	if p := q.pending[user]; len(p) > 0 {
		q.setPending(user, p[1:])
	}
}

// deleted counts one of user's relays gone.
func (q *relayQuota) deleted(user string) {
	q.mu.Lock()
	defer q.mu.Unlock()
	if q.live[user]--; q.live[user] <= 0 {
		delete(q.live, user)
	}
}

// NewTURN starts a TURN server on the given sockets. It owns them from
// here on and closes them in Close.
func NewTURN(cfg TURNConfig) (*TURNServer, error) {
	if cfg.Secret == "" {
		return nil, errors.New("turn: a secret is required")
	}
	if cfg.RelayIP == nil {
		return nil, errors.New("turn: a relay address is required")
	}
	if cfg.Realm == "" {
		cfg.Realm = "citybridge"
	}
	if cfg.MaxAllocationsPerUser <= 0 {
		cfg.MaxAllocationsPerUser = 24
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	peers := cfg.Peers
	if peers == nil {
		peers = func(net.IP) bool { return false }
	}
	t := &TURNServer{log: cfg.Logger, quota: newRelayQuota(cfg.MaxAllocationsPerUser)}
	lf := slogFactory{cfg.Logger}
	bind := "0.0.0.0"
	if cfg.RelayIP.To4() == nil {
		bind = "::"
	}
	relay := func() turn.RelayAddressGenerator {
		return &mediaOnlyRelay{
			RelayAddressGeneratorStatic: turn.RelayAddressGeneratorStatic{RelayAddress: cfg.RelayIP, Address: bind},
			peers:                       peers, ports: cfg.MediaPorts,
		}
	}
	permit := func(client net.Addr, peer net.IP) bool {
		ok := peers(peer)
		if !ok {
			cfg.Logger.Warn("turn: relay to a foreign address refused", "client", client.String(), "peer", peer.String())
		}
		return ok
	}
	sc := turn.ServerConfig{
		LoggerFactory: lf,
		Realm:         cfg.Realm,
		AuthHandler:   turn.LongTermTURNRESTAuthHandler(cfg.Secret, lf.NewLogger("turn")),
		QuotaHandler: func(username, _ string, _ net.Addr) bool {
			return t.quota.reserve(username, time.Now())
		},
		EventHandler: turn.EventHandler{
			OnAllocationCreated: func(src, _ net.Addr, proto, user, _ string, relayAddr net.Addr, _ int) {
				t.quota.created(user)
				cfg.Logger.Debug("turn: allocation", "client", src.String(), "protocol", proto, "user", user, "relay", relayAddr.String())
			},
			OnAllocationDeleted: func(src, _ net.Addr, proto, user, _ string) {
				t.quota.deleted(user)
				cfg.Logger.Debug("turn: allocation ended", "client", src.String(), "protocol", proto, "user", user)
			},
		},
	}
	for _, pc := range cfg.PacketConns {
		sc.PacketConnConfigs = append(sc.PacketConnConfigs, turn.PacketConnConfig{
			PacketConn: pc, RelayAddressGenerator: relay(), PermissionHandler: permit,
		})
	}
	for _, ln := range cfg.Listeners {
		sc.ListenerConfigs = append(sc.ListenerConfigs, turn.ListenerConfig{
			Listener: ln, RelayAddressGenerator: relay(), PermissionHandler: permit,
		})
	}
	srv, err := turn.NewServer(sc)
	if err != nil {
		return nil, fmt.Errorf("turn: %w", err)
	}
	t.srv = srv
	return t, nil
}

// Allocations is the number of live relays.
func (t *TURNServer) Allocations() int { return t.srv.AllocationCount() }

// Close ends every relay and closes the sockets.
func (t *TURNServer) Close() error { return t.srv.Close() }

// TURNCredentials makes a TURN REST credential for user valid for ttl:
// username "expiry:user", password base64(HMAC-SHA1(secret, username)).
// coturn's use-auth-secret checks the same scheme, so an external TURN
// server can take the embedded one's place with the same secret.
func TURNCredentials(secret, user string, ttl time.Duration) (username, password string, err error) {
	return turn.GenerateLongTermTURNRESTCredentials(secret, user, ttl)
}

// mediaOnlyRelay makes UDP relays that talk only to the SFU's media port
// on this host's addresses, and refuses TCP relays.
type mediaOnlyRelay struct {
	turn.RelayAddressGeneratorStatic
	peers func(net.IP) bool
	ports []int
}

var errNoTCPRelay = errors.New("turn: TCP relays are not offered")

func (r *mediaOnlyRelay) AllocatePacketConn(c turn.AllocateListenerConfig) (net.PacketConn, net.Addr, error) {
	pc, addr, err := r.RelayAddressGeneratorStatic.AllocatePacketConn(c)
	if err != nil {
		return nil, nil, err
	}
	return &relayConn{PacketConn: pc, ok: r.allowed}, addr, nil
}

func (r *mediaOnlyRelay) AllocateListener(turn.AllocateListenerConfig) (net.Listener, net.Addr, error) {
	return nil, nil, errNoTCPRelay
}

func (r *mediaOnlyRelay) AllocateConn(turn.AllocateConnConfig) (net.Conn, error) {
	return nil, errNoTCPRelay
}

func (r *mediaOnlyRelay) allowed(a net.Addr) bool {
	ua, ok := a.(*net.UDPAddr)
	return ok && slices.Contains(r.ports, ua.Port) && r.peers(ua.IP)
}

// relayConn is one relay's socket, limited to the SFU's media port.
type relayConn struct {
	net.PacketConn
	ok func(net.Addr) bool
}

func (c *relayConn) WriteTo(b []byte, a net.Addr) (int, error) {
	if !c.ok(a) {
		return 0, errors.New("turn: relay destination is not this server's media port")
	}
	return c.PacketConn.WriteTo(b, a)
}

func (c *relayConn) ReadFrom(b []byte) (int, net.Addr, error) {
	for {
		n, a, err := c.PacketConn.ReadFrom(b)
		if err != nil || c.ok(a) {
			return n, a, err
		}
	}
}

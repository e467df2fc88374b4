package main

import (
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"encoding/hex"
	"fmt"
	"net"
	"strconv"
	"sync/atomic"

	"citybridge/sfu"
	"citybridge/signaling/wire"
)

// certStore holds the serving certificate and swaps it on reload: new
// TLS handshakes see the new one, connections already open (the pages'
// WebSockets, TURN over TLS) keep theirs, and media (DTLS-SRTP, which has
// its own keys) is not touched at all.
type certStore struct {
	cfg Config
	cur atomic.Pointer[tls.Certificate]
}

func newCertStore(cfg Config) (*certStore, bool, error) {
	cert, generated, err := loadOrCreateCertificate(cfg)
	if err != nil {
		return nil, false, err
	}
	c := &certStore{cfg: cfg}
	c.cur.Store(&cert)
	return c, generated, nil
}

func (c *certStore) get(*tls.ClientHelloInfo) (*tls.Certificate, error) { return c.cur.Load(), nil }

// reload reads the certificate files again. On any error the current
// certificate stays.
func (c *certStore) reload() (*x509.Certificate, error) {
	cert, _, err := loadOrCreateCertificate(c.cfg)
	if err != nil {
		return nil, err
	}
	leaf, err := x509.ParseCertificate(cert.Certificate[0])
	if err != nil {
		return nil, err
	}
	cert.Leaf = leaf
	c.cur.Store(&cert)
	return leaf, nil
}

func (c *certStore) tlsConfig() *tls.Config {
	return &tls.Config{GetCertificate: c.get, MinVersion: tls.VersionTLS12}
}

// reloadCertificate is what SIGHUP does.
func (s *server) reloadCertificate() {
	leaf, err := s.certs.reload()
	if err != nil {
		s.log.Error("certificate reload failed; the current certificate stays", "err", err)
		return
	}
	s.log.Info("certificate reloaded", "subject", leaf.Subject.String(), "not_after", leaf.NotAfter,
		"serial", leaf.SerialNumber.String())
}

// turnAddress is where pages are told to find TURN, and where relays are
// announced: the first --public-ip, or the --listen address when it names
// one. Without either the server does not know which of its addresses the
// rooms can reach, and hands out no TURN server.
func (c Config) turnAddress() net.IP {
	if len(c.PublicIPs) > 0 {
		return net.ParseIP(c.PublicIPs[0])
	}
	if host, _, err := net.SplitHostPort(c.Listen); err == nil {
		if ip := net.ParseIP(host); ip != nil && !ip.IsUnspecified() {
			return ip
		}
	}
	return nil
}

// startTURN starts the embedded TURN server on the TURN port (UDP and
// TCP) and on the front door's TURN connections (TCP and TLS on the
// HTTPS port). It returns nil when TURN is off or handed elsewhere.
func (s *server) startTURN(front *sfu.FrontDoor) error {
	cfg := s.cfg
	if !cfg.TURN || len(cfg.TURNURLs) > 0 {
		return nil
	}
	relayIP := cfg.turnAddress()
	if relayIP == nil {
		s.log.Warn("embedded TURN off: give --public-ip so pages know where to reach it")
		return nil
	}
	if s.turnSecret == "" {
		b := make([]byte, 32)
		if _, err := rand.Read(b); err != nil {
			return err
		}
		s.turnSecret = hex.EncodeToString(b)
	}
	own, err := ownAddresses(cfg.PublicIPs)
	if err != nil {
		return err
	}
	tc := sfu.TURNConfig{
		Listeners:  []net.Listener{front.TURN()},
		RelayIP:    relayIP,
		Peers:      func(ip net.IP) bool { return own[ip.String()] },
		MediaPorts: s.media.Ports(),
		Secret:     s.turnSecret,
		Logger:     s.log.With("component", "turn"),
	}
	if cfg.TURNPort > 0 {
		host := ""
		if h, _, err := net.SplitHostPort(cfg.Listen); err == nil {
			host = h
		}
		addr := net.JoinHostPort(host, strconv.Itoa(cfg.TURNPort))
		pc, err := net.ListenPacket("udp", addr)
		if err != nil {
			return fmt.Errorf("TURN port (udp): %w", err)
		}
		ln, err := net.Listen("tcp", addr)
		if err != nil {
			_ = pc.Close()
			return fmt.Errorf("TURN port (tcp): %w", err)
		}
		tc.PacketConns = []net.PacketConn{pc}
		tc.Listeners = append(tc.Listeners, ln)
	}
	if s.turn, err = sfu.NewTURN(tc); err != nil {
		for _, pc := range tc.PacketConns {
			_ = pc.Close()
		}
		for _, ln := range tc.Listeners[1:] {
			_ = ln.Close()
		}
		return err
	}
	s.turnURLs = embeddedTURNURLs(cfg, s.addr)
	s.log.Info("embedded TURN serving", "relay_ip", relayIP.String(), "urls", s.turnURLs)
	return nil
}

// embeddedTURNURLs lists, for each announced address, TURN over UDP and
// TCP on the TURN port, and TURN over TCP and TLS on the HTTPS port (the
// one a strict firewall lets through).
func embeddedTURNURLs(cfg Config, https net.Addr) []string {
	hosts := cfg.PublicIPs
	if len(hosts) == 0 {
		hosts = []string{cfg.turnAddress().String()}
	}
	httpsPort := strconv.Itoa(https.(*net.TCPAddr).Port)
	var urls []string
	for _, h := range hosts {
		if ip := net.ParseIP(h); ip != nil && ip.To4() == nil {
			h = "[" + h + "]"
		}
		if cfg.TURNPort > 0 {
			p := strconv.Itoa(cfg.TURNPort)
			urls = append(urls, "turn:"+h+":"+p+"?transport=udp", "turn:"+h+":"+p+"?transport=tcp")
		}
		urls = append(urls, "turn:"+h+":"+httpsPort+"?transport=tcp", "turns:"+h+":"+httpsPort+"?transport=tcp")
	}
	return urls
}

// iceServers is what a page gets at join: the TURN URLs (embedded or
// external) with a credential for this participant, or nothing.
func (s *server) iceServers(participant string) []wire.ICEServer {
	urls, secret := s.turnURLs, s.turnSecret
	if len(urls) == 0 {
		return nil
	}
	user, pass, err := sfu.TURNCredentials(secret, participant, s.cfg.TURNTTL)
	if err != nil {
		s.log.Error("TURN credential", "bridge", participant, "err", err)
		return nil
	}
	return []wire.ICEServer{{URLs: urls, Username: user, Credential: pass}}
}

// ownAddresses is every address of this host plus the announced ones:
// the only places a relay may send to.
func ownAddresses(public []string) (map[string]bool, error) {
	addrs, err := net.InterfaceAddrs()
	if err != nil {
		return nil, err
	}
	own := map[string]bool{}
	for _, a := range addrs {
		if n, ok := a.(*net.IPNet); ok {
			own[n.IP.String()] = true
		}
	}
	for _, p := range public {
		if ip := net.ParseIP(p); ip != nil {
			own[ip.String()] = true
		}
	}
	return own, nil
}

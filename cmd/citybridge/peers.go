package main

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httputil"
	"net/url"
	"os"
	"slices"
	"sync"
	"time"

	"citybridge/controlplane"
	"citybridge/sfu/record"
)

// A cluster's nodes answer for each other (docs/CLUSTER.md, "Observing
// the cluster"). A conference's live state (members, links, floor, a
// readiness check under way) is in the memory of the node that serves
// it, so a technician's request about it that reaches another node is
// passed to the owner with the caller's own credentials, and the links
// view gathers every node's part. The host console needs none of this:
// its wall comes over its signaling WebSocket, which is already sent to
// the owner (a redirect).

// liveRoutes are the API routes answered from a conference's live state.
// On a node that does not serve the conference they go to the node that
// does. Everything else the API answers from the shared store, on any
// node.
var liveRoutes = []string{
	"GET /api/conferences/{id}/bridges", // presence
	"POST /api/conferences/{id}/state",  // ending it sends its sessions away
	"GET /api/conferences/{id}/floor",
	"POST /api/conferences/{id}/floor",
	"DELETE /api/conferences/{id}/floor",
	"POST /api/conferences/{id}/bridges/{bridge}/mute",
	"DELETE /api/conferences/{id}/bridges/{bridge}/mute",
	"POST /api/conferences/{id}/mute-all",
	"POST /api/conferences/{id}/lock",
	"DELETE /api/conferences/{id}/lock",
	"DELETE /api/conferences/{id}/hands/{bridge}",
	"PUT /api/conferences/{id}/bridges/{bridge}/max-layer",
	"POST /api/conferences/{id}/bridges/{bridge}/actions/{action}",
	"POST /api/conferences/{id}/readiness",
	"GET /api/conferences/{id}/readiness", // a check under way is the owner's
	// Recording: the owner's recorder writes, and it renders the minutes
	// after a stop, so their job's state is in its memory.
	"POST /api/conferences/{id}/recording",
	"DELETE /api/conferences/{id}/recording",
	"GET /api/conferences/{id}/recording",
	"POST /api/conferences/{id}/recording/minutes",
	"DELETE /api/conferences/{id}/recording/minutes",
}

// archiveRoutes read or delete a conference's recorded files, which are
// on the disk of the node that recorded them. A node that has the
// conference's manifest answers from its own disk (so a download URL one
// node listed works at that node, and a shared --recordings directory is
// one archive for all); one that has none passes the request to the
// conference's owner, which records it now; with no owner it answers
// from its own disk (nothing). A conference recorded on two nodes (it
// moved during a recording) has a part on each: each node lists its own.
var archiveRoutes = []string{
	"GET /api/conferences/{id}/recordings",
	"GET /api/conferences/{id}/recordings/{file}",
	"DELETE /api/conferences/{id}/recordings",
}

// peerTimeout bounds one node's answer for the links view: a node that
// does not answer in time is left out and named (missing_nodes), so one
// stuck node does not stop the dashboard.
const peerTimeout = 2 * time.Second

// newPeerTransport is how nodes reach each other. Nodes present one
// certificate that names every node's address (--tls-cert), so a node
// trusts the system's roots and its own certificate, read again at each
// connection so that a certificate reloaded on SIGHUP counts at once.
// Verification is never turned off.
func (s *server) newPeerTransport() *http.Transport {
	return &http.Transport{
		DialTLSContext: func(ctx context.Context, network, addr string) (net.Conn, error) {
			d := tls.Dialer{Config: s.peerTLS()}
			return d.DialContext(ctx, network, addr)
		},
		TLSHandshakeTimeout:   5 * time.Second,
		ResponseHeaderTimeout: 30 * time.Second,
		MaxIdleConnsPerHost:   4,
		IdleConnTimeout:       time.Minute,
	}
}

// peerTLS trusts the system's roots and this server's own certificate
// chain (the one the nodes share).
func (s *server) peerTLS() *tls.Config {
	pool, err := x509.SystemCertPool()
	if err != nil {
		pool = x509.NewCertPool()
	}
	if c := s.certs.cur.Load(); c != nil {
		for _, der := range c.Certificate {
			if x, err := x509.ParseCertificate(der); err == nil {
				pool.AddCert(x)
			}
		}
	}
	return &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}
}

// ownerForward sends the live routes of a conference another node serves
// to that node. On one machine there is nothing to forward.
func (s *server) ownerForward(next http.Handler) http.Handler {
	if s.node == nil {
		return next
	}
	mux := http.NewServeMux()
	mux.Handle("/", next)
	for _, p := range liveRoutes {
		mux.Handle(p, s.toOwner(next))
	}
	toOwner := s.toOwner(next)
	for _, p := range archiveRoutes {
		mux.Handle(p, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if s.hasRecordings(r.PathValue("id")) {
				next.ServeHTTP(w, r)
				return
			}
			toOwner.ServeHTTP(w, r)
		}))
	}
	return mux
}

// hasRecordings reports whether this node's recordings directory has a
// manifest of conference.
func (s *server) hasRecordings(conference string) bool {
	_, err := record.Archive{Dir: s.cfg.recordingsDir()}.Manifest(conference)
	return err == nil
}

// hasCredential says whether r presents a token or a login cookie. A
// request with neither is refused where it lands (401), without asking
// etcd or another node on its behalf.
func hasCredential(r *http.Request) bool {
	if controlplane.BearerToken(r) != "" {
		return true
	}
	_, err := r.Cookie(controlplane.SessionCookie)
	return err == nil
}

// toOwner answers a live route here when this node serves the conference
// or nobody does (then the store's answer is the answer), and otherwise
// passes it to the owner.
func (s *server) toOwner(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		conf := r.PathValue("id")
		if !hasCredential(r) || s.node.Serves(conf) {
			next.ServeHTTP(w, r)
			return
		}
		owner, ok, err := s.node.Owner(conf)
		switch {
		case err != nil:
			s.log.Warn("cluster: cannot ask which node serves a conference; request refused",
				"conference", conf, "path", r.URL.Path, "err", err)
			controlplane.WriteError(w, http.StatusServiceUnavailable, "cluster_unavailable",
				"the cluster cannot be asked which node serves this conference; try again")
		case !ok || owner.Name == s.cfg.Node:
			next.ServeHTTP(w, r)
		case controlplane.Forwarded(r):
			// Another node took this one for the owner; the owner has
			// changed meanwhile. Sending it on could loop between nodes.
			s.log.Warn("cluster: a forwarded request for a conference another node serves: not sent on",
				"conference", conf, "owner", owner.Name, "from", r.Header.Get(controlplane.ForwardedHeader), "path", r.URL.Path)
			controlplane.WriteError(w, http.StatusLoopDetected, "forward_loop",
				"this request was forwarded here by another node, but "+owner.Name+" serves the conference; try again")
		default:
			if r.Method != http.MethodGet {
				// The owner's audit log has this node's address; this line
				// has the caller's.
				s.log.Info("cluster: forwarded to the conference's owner", "conference", conf, "owner", owner.Name,
					"method", r.Method, "path", r.URL.Path, "remote", r.RemoteAddr)
			}
			s.forwardTo(w, owner, conf).ServeHTTP(w, r)
		}
	})
}

// forwardTo is a reverse proxy to the owner for one request. The
// caller's Authorization header and cookie go with it unchanged (the
// owner checks them against the same store), and so does Origin (every
// node's pages are allowed origins of every other).
func (s *server) forwardTo(w http.ResponseWriter, owner controlplane.NodeInfo, conf string) http.Handler {
	target, err := url.Parse(owner.Advertise)
	if err != nil || target.Host == "" {
		return http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
			controlplane.WriteError(w, http.StatusBadGateway, "node_unreachable", "the owner's address is not usable")
		})
	}
	return &httputil.ReverseProxy{
		Rewrite: func(pr *httputil.ProxyRequest) {
			pr.SetURL(target)
			pr.SetXForwarded()
			pr.Out.Header.Set(controlplane.ForwardedHeader, s.cfg.Node)
		},
		Transport: s.peerTransport,
		ErrorLog:  slog.NewLogLogger(s.log.Handler(), slog.LevelDebug),
		// This node has set its own security headers already; the owner's
		// copies would come twice.
		ModifyResponse: func(resp *http.Response) error {
			for k := range w.Header() {
				resp.Header.Del(k)
			}
			return nil
		},
		ErrorHandler: func(w http.ResponseWriter, r *http.Request, err error) {
			s.log.Warn("cluster: the conference's owner did not answer a forwarded request",
				"conference", conf, "owner", owner.Name, "path", r.URL.Path, "err", err)
			controlplane.WriteError(w, http.StatusBadGateway, "node_unreachable", "the node serving this conference did not answer")
		},
	}
}

// nodePeers is the API's view of the cluster's other nodes.
type nodePeers struct{ s *server }

func (p nodePeers) Self() string { return p.s.cfg.Node }

func (p nodePeers) Serves(conference string) bool { return p.s.node.Serves(conference) }

// Ask asks every other live node at once, each within peerTimeout.
func (p nodePeers) Ask(path string, auth func(*http.Request), decode func(string, io.Reader) error) []string {
	var (
		wg      sync.WaitGroup
		mu      sync.Mutex
		missing []string
	)
	for _, n := range p.s.liveNodeInfos() {
		if n.Name == p.s.cfg.Node {
			continue
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := p.askOne(n, path, auth, decode); err != nil {
				// The view names the node; the log says why, once per
				// answer missed at debug level (the live feed asks every
				// second).
				p.s.log.Debug("cluster: a node did not answer", "node", n.Name, "path", path, "err", err)
				mu.Lock()
				missing = append(missing, n.Name)
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	slices.Sort(missing)
	return missing
}

func (p nodePeers) askOne(n controlplane.NodeInfo, path string, auth func(*http.Request), decode func(string, io.Reader) error) error {
	ctx, cancel := context.WithTimeout(context.Background(), peerTimeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, n.Advertise+path, nil)
	if err != nil {
		return err
	}
	auth(req)
	req.Header.Set(controlplane.ForwardedHeader, p.s.cfg.Node)
	resp, err := p.s.peerClient().Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("answered %s", resp.Status)
	}
	return decode(n.Name, resp.Body)
}

// peerClient is the client for the nodes' requests to each other.
func (s *server) peerClient() *http.Client {
	return &http.Client{Transport: s.peerTransport, CheckRedirect: func(*http.Request, []*http.Request) error {
		return http.ErrUseLastResponse // a node answers for itself; it never sends a peer elsewhere
	}}
}

// nodesView is what GET /api/nodes answers: the cluster's nodes, or on
// one machine this server alone, named by its host name.
func (s *server) nodesView() controlplane.NodesView {
	if s.node != nil {
		return s.node.Status()
	}
	name, _ := os.Hostname()
	return controlplane.NodesView{Mode: controlplane.ModeSingle, Nodes: []controlplane.NodeStatus{{
		NodeInfo:    controlplane.NodeInfo{Name: name, Advertise: s.baseURL(), Version: version, Load: s.load(), Started: s.started},
		Conferences: s.sig.Conferences(), Health: controlplane.HealthOK, Self: true,
	}}}
}

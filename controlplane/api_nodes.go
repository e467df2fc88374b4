package controlplane

import (
	"cmp"
	"encoding/json"
	"io"
	"net/http"
	"slices"
	"strings"
	"sync"
)

// The API across a cluster's nodes (docs/CLUSTER.md). The records are
// shared through etcd, but a conference's live state (its members, their
// links, its alerts) is in the memory of the one node that serves it. So
// the Nodes panel lists the nodes, and the technicians' links view asks
// every other node for its own links with the caller's credentials and
// shows them together, whichever node the page is open on.

// ForwardedHeader marks a request one node makes of another on a caller's
// behalf; its value is the asking node's name. A request carrying it is
// answered from the receiving node's own memory and never sent on to
// another node, so two nodes that disagree for a moment about who serves
// a conference cannot pass a request back and forth. A client setting it
// gains nothing: its credentials are checked as on any request, and it
// only sees one node's part.
const ForwardedHeader = "Citybridge-Forwarded"

// Forwarded says whether another node sent r on a caller's behalf.
func Forwarded(r *http.Request) bool { return r.Header.Get(ForwardedHeader) != "" }

// Peers are the cluster's other nodes, for what only they hold in memory
// (nil on one machine).
type Peers interface {
	// Self is this node's name.
	Self() string
	// Serves says whether this node serves a conference now.
	Serves(conference string) bool
	// Ask sends GET path to every other live node, with the caller's
	// credentials (auth sets them on each request) and ForwardedHeader,
	// and hands each 200 answer's body to decode with the node's name
	// (decode may be called from several goroutines at once). It returns
	// the names of the nodes that did not answer in time.
	Ask(path string, auth func(*http.Request), decode func(node string, body io.Reader) error) (missing []string)
}

// SetPeers connects the API to the cluster's other nodes.
func (a *API) SetPeers(p Peers) { a.peers = p }

// SetNodes sets what GET /api/nodes answers: the cluster's nodes, or this
// one server (cmd wires it).
func (a *API) SetNodes(f func() NodesView) { a.nodes = f }

// TokenAuth presents a link token on a request to another node.
func TokenAuth(token string) func(*http.Request) {
	return func(r *http.Request) { r.Header.Set("Authorization", "Bearer "+token) }
}

// SessionAuth presents a login session's cookie on a request to another
// node (the session is in the shared store, so every node knows it).
func SessionAuth(cookie string) func(*http.Request) {
	return func(r *http.Request) { r.AddCookie(&http.Cookie{Name: SessionCookie, Value: cookie}) }
}

// callerAuth presents r's own credential (its bearer token, else its
// login cookie) on a request to another node.
func callerAuth(r *http.Request) func(*http.Request) {
	if tok := BearerToken(r); tok != "" {
		return TokenAuth(tok)
	}
	if c, err := r.Cookie(SessionCookie); err == nil {
		return SessionAuth(c.Value)
	}
	return func(*http.Request) {}
}

func (a *API) registerNodes(m auditMux) {
	m.HandleFunc("GET /api/nodes", a.listNodes)
}

// listNodes serves GET /api/nodes: every live node with its load, the
// conferences it serves (with their titles) and its health.
func (a *API) listNodes(w http.ResponseWriter, r *http.Request) {
	if _, ok := a.allow(w, r, RoleTechnician, RoleAdmin); !ok {
		return
	}
	if a.nodes == nil {
		writeError(w, http.StatusServiceUnavailable, "unavailable", "the nodes are not known here")
		return
	}
	v := a.nodes()
	v.Titles = map[string]string{}
	for _, n := range v.Nodes {
		for _, id := range n.Conferences {
			if c, err := a.store.Conference(id); err == nil {
				v.Titles[id] = c.Title
			}
		}
	}
	writeJSON(w, http.StatusOK, v)
}

// maxPeerAnswer bounds what is read of one node's answer (168 bridges'
// links are about 200 KB).
const maxPeerAnswer = 16 << 20

// ClusterLinksView is the links view of every node: this node's links,
// then those of each other node, asked with the caller's credentials
// (auth). On one machine it is LinksView.
func (a *API) ClusterLinksView(auth func(*http.Request)) (LinksView, error) {
	v, err := a.ownLinksView()
	if err != nil || a.peers == nil {
		return v, err
	}
	var mu sync.Mutex
	v.Missing = a.peers.Ask("/api/links", auth, func(node string, body io.Reader) error {
		var pv LinksView
		if err := json.NewDecoder(io.LimitReader(body, maxPeerAnswer)).Decode(&pv); err != nil {
			return err
		}
		mu.Lock()
		defer mu.Unlock()
		for _, l := range pv.Links {
			l.Node = node
			v.Links = append(v.Links, l)
		}
		v.Alerts = append(v.Alerts, withNode(pv.Alerts, node)...)
		return nil
	})
	slices.SortFunc(v.Links, func(x, y LinkView) int {
		return cmp.Or(strings.Compare(x.Conference, y.Conference), strings.Compare(x.Bridge, y.Bridge))
	})
	sortAlerts(v.Alerts)
	return v, nil
}

// ownLinksView is this node's part of the links view. In a cluster it
// holds only the conferences this node serves (a bridge that was here
// before a hand-over is the new owner's to show) and marks each with the
// node's name.
func (a *API) ownLinksView() (LinksView, error) {
	v, err := a.LinksView()
	if err != nil || a.peers == nil {
		return v, err
	}
	self := a.peers.Self()
	own := v.Links[:0]
	for _, l := range v.Links {
		if a.peers.Serves(l.Conference) {
			l.Node = self
			own = append(own, l)
		}
	}
	v.Links = own
	v.Alerts = withNode(v.Alerts, self)
	return v, nil
}

// clusterAlerts is the alerts of every node (GET /api/alerts), as
// ClusterLinksView.
func (a *API) clusterAlerts(r *http.Request, recent bool) []Alert {
	out := []Alert{}
	if a.monitor != nil {
		out = append(out, a.monitor.Alerts(recent)...)
	}
	if a.peers == nil {
		return out
	}
	out = withNode(out, a.peers.Self())
	if Forwarded(r) {
		return out
	}
	path := "/api/alerts"
	if recent {
		path += "?recent=1"
	}
	var mu sync.Mutex
	a.peers.Ask(path, callerAuth(r), func(node string, body io.Reader) error {
		var al []Alert
		if err := json.NewDecoder(io.LimitReader(body, maxPeerAnswer)).Decode(&al); err != nil {
			return err
		}
		mu.Lock()
		defer mu.Unlock()
		out = append(out, withNode(al, node)...)
		return nil
	})
	sortAlerts(out)
	return out
}

// withNode marks alerts with the node that raised them (their IDs are
// that node's own).
func withNode(al []Alert, node string) []Alert {
	for i := range al {
		al[i].Node = node
	}
	return al
}

// sortAlerts orders alerts as the monitor does: the active ones, newest
// first, then the cleared ones, most recently cleared first.
func sortAlerts(al []Alert) {
	slices.SortStableFunc(al, func(x, y Alert) int {
		switch {
		case x.Cleared.IsZero() != y.Cleared.IsZero():
			if x.Cleared.IsZero() {
				return -1
			}
			return 1
		case x.Cleared.IsZero():
			return y.Raised.Compare(x.Raised)
		default:
			return y.Cleared.Compare(x.Cleared)
		}
	})
}

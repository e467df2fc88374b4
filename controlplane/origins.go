package controlplane

import (
	"fmt"
	"net/http"
	"net/url"
	"strings"
)

// Origins says which pages may call the API with a login cookie and open
// the signaling WebSocket: citybridge's own (same host as the request),
// and any listed here, e.g. the name a reverse proxy serves the pages
// under ("https://bridge.city.example").
type Origins struct {
	extra map[string]bool // "https://host[:port]", lower case
	// also, if set, allows more origins that change while the server runs
	// (a cluster's other nodes, whose pages send terminals here).
	also func(origin string) bool
}

// Also adds a check of origins that change while the server runs (a
// cluster's live nodes).
func (o *Origins) Also(f func(origin string) bool) { o.also = f }

// NewOrigins checks and normalises a list of origins
// (scheme://host[:port], nothing after).
func NewOrigins(list []string) (*Origins, error) {
	o := &Origins{extra: map[string]bool{}}
	for _, s := range list {
		u, err := url.Parse(s)
		if err != nil || (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" ||
			(u.Path != "" && u.Path != "/") || u.RawQuery != "" || u.User != nil || u.Fragment != "" {
			return nil, fmt.Errorf("origin %q: want scheme://host[:port], e.g. https://bridge.city.example", s)
		}
		o.extra[strings.ToLower(u.Scheme+"://"+u.Host)] = true
	}
	return o, nil
}

// allowed says whether origin (an Origin or Referer header's value) is
// the request's own origin or a listed one. citybridge serves its pages
// over HTTPS only (the front door closes anything else), so its own
// origin is https://HOST: a page at http://HOST (a name served otherwise,
// or a downgraded proxy) is another origin and is refused, unless listed.
func (o *Origins) allowed(r *http.Request, origin string) bool {
	u, err := url.Parse(origin)
	if err != nil || u.Host == "" {
		return false
	}
	if strings.EqualFold(u.Scheme, "https") && strings.EqualFold(u.Host, r.Host) {
		return true
	}
	if o == nil {
		return false
	}
	norm := strings.ToLower(u.Scheme + "://" + u.Host)
	return o.extra[norm] || (o.also != nil && o.also(norm))
}

// FromOwnPage says whether a request comes from a page citybridge served
// (CSRF check for cookie requests): its Origin, else its Referer, names an
// allowed origin; with neither, the browser's Sec-Fetch-Site must say
// same-origin.
func (o *Origins) FromOwnPage(r *http.Request) bool {
	origin := r.Header.Get("Origin")
	if origin == "" {
		origin = r.Header.Get("Referer")
	}
	if origin == "" {
		return r.Header.Get("Sec-Fetch-Site") == "same-origin"
	}
	return o.allowed(r, origin)
}

// WebSocket is the signaling upgrade's origin check: clients that are not
// browsers send no Origin (terminals, WHIP tools) and are let through to
// the join, which needs a credential anyway; a browser page must be an
// allowed origin.
func (o *Origins) WebSocket(r *http.Request) bool {
	origin := r.Header.Get("Origin")
	return origin == "" || o.allowed(r, origin)
}

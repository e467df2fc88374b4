package main

import (
	"io/fs"
	"net/http"
	"regexp"
	"strings"
	"testing"

	"citybridge/web"
)

// TestSecurityHeaders: every answer, page or API, carries the policy: no
// script or style but the server's own files, no framing, HSTS (the server
// only speaks HTTPS), no sniffing, no referrer.
func TestSecurityHeaders(t *testing.T) {
	t.Parallel()
	ts := startTestServer(t)
	for _, path := range []string{"/", "/host", "/room", "/rooms", "/tech", "/admin", "/static/app.css", "/api/me", "/healthz", "/no-such-page"} {
		resp, _ := request(t, ts, http.MethodGet, path, "", "", "")
		csp := resp.Header.Get("Content-Security-Policy")
		for _, want := range []string{"default-src 'self'", "script-src 'self'", "style-src 'self'", "frame-ancestors 'none'"} {
			if !strings.Contains(csp, want) {
				t.Errorf("%s: Content-Security-Policy %q lacks %q", path, csp, want)
			}
		}
		if strings.Contains(csp, "unsafe-inline") || strings.Contains(csp, "unsafe-eval") {
			t.Errorf("%s: Content-Security-Policy %q allows inline code", path, csp)
		}
		for h, want := range map[string]string{
			"Strict-Transport-Security": "max-age=",
			"X-Content-Type-Options":    "nosniff",
			"Referrer-Policy":           "no-referrer",
		} {
			if !strings.Contains(resp.Header.Get(h), want) {
				t.Errorf("%s: %s = %q, want %q", path, h, resp.Header.Get(h), want)
			}
		}
	}
}

// TestPagesNeedNoInlineCode: the embedded pages hold nothing the policy
// would block: no inline script, no event-handler attribute, no style
// attribute (each would silently not work in the browser).
func TestPagesNeedNoInlineCode(t *testing.T) {
	inline := []*regexp.Regexp{
		regexp.MustCompile(`(?i)<script(\s[^>]*)?>\s*[^<\s]`), // a script element with a body
		regexp.MustCompile(`(?i)\son[a-z]+\s*=`),              // onclick= and the like
		regexp.MustCompile(`(?i)\sstyle\s*=`),                 // style attributes
		regexp.MustCompile(`(?i)javascript:`),
	}
	n := 0
	err := fs.WalkDir(web.Static(), ".", func(path string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() || !strings.HasSuffix(path, ".html") {
			return err
		}
		b, err := fs.ReadFile(web.Static(), path)
		if err != nil {
			return err
		}
		n++
		for _, re := range inline {
			if m := re.Find(b); m != nil {
				t.Errorf("%s: %q would be blocked by the Content-Security-Policy", path, m)
			}
		}
		return nil
	})
	if err != nil || n < 5 {
		t.Fatalf("walked %d pages: %v", n, err)
	}
}

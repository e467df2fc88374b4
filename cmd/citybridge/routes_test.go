package main

import (
	"go/ast"
	"go/parser"
	"go/token"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
)

// registeredRoutes returns the literal patterns the server's packages
// register on an http.ServeMux (Handle and HandleFunc calls), read from
// their source, with the file each is in. Patterns built at run time (the
// pages, WHIP and WHEP's per-resource routes) are not literals and are
// covered by the rows for their prefixes.
func registeredRoutes(t *testing.T) map[string]string {
	t.Helper()
	out := map[string]string{}
	fset := token.NewFileSet()
	for _, dir := range []string{".", "../../controlplane", "../../signaling", "../../web", "../../sfu"} {
		files, err := filepath.Glob(filepath.Join(dir, "*.go"))
		if err != nil {
			t.Fatal(err)
		}
		for _, name := range files {
			if strings.HasSuffix(name, "_test.go") {
				continue
			}
			f, err := parser.ParseFile(fset, name, nil, 0)
			if err != nil {
				t.Fatal(err)
			}
			ast.Inspect(f, func(n ast.Node) bool {
				call, ok := n.(*ast.CallExpr)
				if !ok || len(call.Args) != 2 {
					return true
				}
				sel, ok := call.Fun.(*ast.SelectorExpr)
				if !ok || (sel.Sel.Name != "Handle" && sel.Sel.Name != "HandleFunc") {
					return true
				}
				lit, ok := call.Args[0].(*ast.BasicLit)
				if !ok || lit.Kind != token.STRING {
					return true
				}
				pattern, err := strconv.Unquote(lit.Value)
				if err == nil && strings.Contains(pattern, "/") {
					out[pattern] = filepath.Base(name)
				}
				return true
			})
		}
	}
	return out
}

// securityTable returns the rows of the table under heading in
// docs/SECURITY.md, for the tests that take their rules from it: the
// trimmed cells of each row whose first cell starts with a backquote (the
// header and separator rows do not), up to the next heading. Every row
// must have columns cells.
func securityTable(t *testing.T, heading string, columns int) [][]string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("..", "..", "docs", "SECURITY.md"))
	if err != nil {
		t.Fatal(err)
	}
	i := strings.Index(string(b), "\n"+heading+"\n")
	if i < 0 {
		t.Fatalf("docs/SECURITY.md has no %q section", heading)
	}
	var rows [][]string
	for _, line := range strings.Split(string(b)[i+1:], "\n")[1:] {
		if strings.HasPrefix(line, "#") {
			break
		}
		line = strings.TrimSpace(line)
		if !strings.HasPrefix(line, "| `") {
			continue
		}
		cells := strings.Split(strings.Trim(line, "|"), "|")
		if len(cells) != columns {
			t.Fatalf("docs/SECURITY.md, %s: %d cells in %q, want %d", heading, len(cells), line, columns)
		}
		for c := range cells {
			cells[c] = strings.TrimSpace(cells[c])
		}
		rows = append(rows, cells)
	}
	return rows
}

// docRoutes reads the first column of docs/SECURITY.md's "HTTP routes"
// table: each backquoted route, as "METHOD /path" or "/path" ("GET /, /host"
// gives "GET /" and "GET /host"; a path ending in * or … stands for every
// path under it).
func docRoutes(t *testing.T) []string {
	t.Helper()
	quoted := regexp.MustCompile("`([^`]+)`")
	var out []string
	for _, cells := range securityTable(t, "## HTTP routes", 6) {
		// "`DELETE`, `PATCH /whip/…`": lone methods go with the next
		// route; a lone path takes the methods of the route before it.
		var pending, methods []string
		for _, m := range quoted.FindAllStringSubmatch(cells[0], -1) {
			words := strings.Fields(m[1])
			switch {
			case len(words) == 2:
				methods = append(pending, words[0])
				pending = nil
				for _, method := range methods {
					out = append(out, method+" "+words[1])
				}
			case len(words) == 1 && strings.HasPrefix(words[0], "/") && methods == nil:
				out = append(out, words[0])
			case len(words) == 1 && strings.HasPrefix(words[0], "/"):
				for _, method := range methods {
					out = append(out, method+" "+words[0])
				}
			case len(words) == 1:
				pending = append(pending, words[0])
			}
		}
	}
	if len(out) < 10 {
		t.Fatalf("read only %d routes from docs/SECURITY.md's HTTP routes table: %v", len(out), out)
	}
	return out
}

// routeDocumented reports whether route ("GET /healthz", "/whip/") has a
// row in the HTTP routes table.
func routeDocumented(route string, doc []string) bool {
	method, path, ok := strings.Cut(route, " ")
	if !ok {
		method, path = "", route
	}
	for _, d := range doc {
		dm, dp, ok := strings.Cut(d, " ")
		if !ok {
			dm, dp = "", d
		}
		if method != "" && dm != "" && method != dm {
			continue
		}
		prefix, wild := strings.CutSuffix(dp, "*")
		if !wild {
			prefix, wild = strings.CutSuffix(dp, "…")
		}
		switch {
		case dp == path:
			return true
		case wild && strings.HasPrefix(path, prefix):
			return true
		case path != "/" && strings.HasSuffix(path, "/") && strings.HasPrefix(dp, path):
			// "/whip/" registers the subtree the rows under it describe
			// (a catch-all "/" needs a row of its own).
			return true
		}
	}
	return false
}

// TestEveryRouteHasARule: every route the server registers has a rule in
// docs/SECURITY.md, which the authorization tests hold it to: an /api/
// operation a row of "API operations" (TestAuthzTable calls each as every
// caller), anything else a row of "HTTP routes". A route added without
// one fails here, before it ships unguarded.
func TestEveryRouteHasARule(t *testing.T) {
	routes := registeredRoutes(t)
	if len(routes) < 40 {
		t.Fatalf("found only %d registered routes in the source: %v", len(routes), routes)
	}
	api := docAllowed(t)
	doc := docRoutes(t)
	for route, file := range routes {
		_, path, _ := strings.Cut(route, " ")
		if path == "" {
			path = route
		}
		switch {
		case route == "/api/":
			// The catch-all: anything not listed answers 404 JSON.
		case strings.HasPrefix(path, "/api/") && !routeDocumented(route, doc):
			if _, ok := api[route]; !ok {
				t.Errorf("%s (%s) has no row in docs/SECURITY.md's API operations table", route, file)
			}
		case !strings.HasPrefix(path, "/api/") && !routeDocumented(route, doc):
			t.Errorf("%s (%s) has no row in docs/SECURITY.md's HTTP routes table", route, file)
		}
	}
	if !t.Failed() {
		t.Logf("%d registered routes, each with a rule", len(routes))
	}
}

// handledMessages returns the wire type names ("Offer") that the signaling
// session's handle method accepts from a client, read from its source.
func handledMessages(t *testing.T) []string {
	t.Helper()
	f, err := parser.ParseFile(token.NewFileSet(), filepath.Join("..", "..", "signaling", "session.go"), nil, 0)
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	wireType := func(e ast.Expr) {
		star, ok := e.(*ast.StarExpr)
		if !ok {
			return
		}
		if sel, ok := star.X.(*ast.SelectorExpr); ok {
			if pkg, ok := sel.X.(*ast.Ident); ok && pkg.Name == "wire" {
				out = append(out, sel.Sel.Name)
			}
		}
	}
	for _, d := range f.Decls {
		fn, ok := d.(*ast.FuncDecl)
		if !ok || fn.Name.Name != "handle" {
			continue
		}
		ast.Inspect(fn.Body, func(n ast.Node) bool {
			switch n := n.(type) {
			case *ast.TypeAssertExpr:
				wireType(n.Type)
			case *ast.CaseClause:
				for _, e := range n.List {
					wireType(e)
				}
			}
			return true
		})
	}
	return out
}

// wireTypeNames maps the wire package's message type constants to their
// values ("Offer" -> "offer", from TypeOffer = "offer").
func wireTypeNames(t *testing.T) map[string]string {
	t.Helper()
	f, err := parser.ParseFile(token.NewFileSet(), filepath.Join("..", "..", "signaling", "wire", "wire.go"), nil, 0)
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]string{}
	ast.Inspect(f, func(n ast.Node) bool {
		vs, ok := n.(*ast.ValueSpec)
		if !ok || len(vs.Names) != 1 || len(vs.Values) != 1 {
			return true
		}
		lit, ok := vs.Values[0].(*ast.BasicLit)
		name, isType := strings.CutPrefix(vs.Names[0].Name, "Type")
		if ok && isType && lit.Kind == token.STRING {
			out[name], _ = strconv.Unquote(lit.Value)
		}
		return true
	})
	return out
}

// TestEverySignalingMessageHasARule: every message type the signaling
// session accepts from a client has a row in docs/SECURITY.md's
// signaling "Messages" table, so a new message cannot ship without a
// rule saying who may send it.
func TestEverySignalingMessageHasARule(t *testing.T) {
	handled := handledMessages(t)
	if len(handled) < 7 {
		t.Fatalf("found only %d message types in the session's handle: %v", len(handled), handled)
	}
	names := wireTypeNames(t)
	documented := map[string]bool{}
	quoted := regexp.MustCompile("`([a-z_]+)`")
	for _, cells := range securityTable(t, "### Messages", 4) {
		for _, m := range quoted.FindAllStringSubmatch(cells[0], -1) {
			documented[m[1]] = true
		}
	}
	for _, h := range handled {
		typ, ok := names[h]
		if !ok {
			t.Errorf("the session handles wire.%s, which has no Type%s constant", h, h)
			continue
		}
		if !documented[typ] {
			t.Errorf("the session handles %q messages, which have no row in docs/SECURITY.md's Signaling messages table", typ)
		}
	}
	if !t.Failed() {
		t.Logf("%d message types handled, each with a rule: %v", len(handled), handled)
	}
}

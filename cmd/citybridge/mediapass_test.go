package main

import (
	"go/ast"
	"go/parser"
	"go/token"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
)

// TestMediaPassListed: every test that skips itself outside the media pass
// (it calls requireMediaPass, directly or through a helper of its package)
// is named in exactly one of scripts/test's two media runs ($rates,
// $media), and every name those runs list is such a test. Likewise every
// controlplane or cmd/citybridge test that needs root (requireRoot) is in
// $rootOnly, which a normal user's scripts/test runs with sudo. A test missing from the lists
// would be skipped under the race detector and never run at all; a stale
// name would select nothing, silently. scripts/test runs this first.
func TestMediaPassListed(t *testing.T) {
	b, err := os.ReadFile(filepath.Join("..", "..", "scripts", "test"))
	if err != nil {
		t.Fatal(err)
	}
	script := string(b)
	checkListed(t, []string{"."}, "requireMediaPass", script, "rates", "media")
	checkListed(t, []string{filepath.Join("..", "..", "controlplane"), "."}, "requireRoot", script, "rootOnly")
}

// checkListed compares the tests of the packages in dirs that call marker
// with the names the script's variables list, one regular expression each
// of the form '^(TestA|TestB)$'.
func checkListed(t *testing.T, dirs []string, marker, script string, vars ...string) {
	t.Helper()
	var marked []string
	for _, dir := range dirs {
		found := testsCalling(t, dir, marker)
		if len(found) == 0 {
			t.Fatalf("no test in %s calls %s: is the marker renamed?", dir, marker)
		}
		marked = append(marked, found...)
	}
	dir := strings.Join(dirs, " or ")
	listed := map[string][]string{} // test name -> the variables listing it
	for _, v := range vars {
		m := regexp.MustCompile(`(?m)^` + v + `='\^\(([A-Za-z0-9_|]+)\)\$'$`).FindStringSubmatch(script)
		if m == nil {
			t.Fatalf("scripts/test has no line %s='^(TestA|TestB)$'", v)
		}
		for _, name := range strings.Split(m[1], "|") {
			listed[name] = append(listed[name], v)
		}
	}
	for _, name := range marked {
		switch vs := listed[name]; len(vs) {
		case 0:
			t.Errorf("%s calls %s but scripts/test lists it in none of %v: it would never run", name, marker, vars)
		case 1:
		default:
			t.Errorf("%s is listed in %v of scripts/test: it would run twice", name, vs)
		}
	}
	for name, vs := range listed {
		if !slices.Contains(marked, name) {
			t.Errorf("scripts/test's %v lists %s, which is no test of %s calling %s", vs, name, dir, marker)
		}
	}
}

// testsCalling returns the tests of the package in dir that call marker,
// directly or through functions of the package that do.
func testsCalling(t *testing.T, dir, marker string) []string {
	t.Helper()
	fset := token.NewFileSet()
	files, err := filepath.Glob(filepath.Join(dir, "*.go"))
	if err != nil {
		t.Fatal(err)
	}
	calls := map[string]map[string]bool{} // function -> the package-level functions it calls
	for _, path := range files {
		f, err := parser.ParseFile(fset, path, nil, parser.SkipObjectResolution)
		if err != nil {
			t.Fatal(err)
		}
		for _, d := range f.Decls {
			fn, ok := d.(*ast.FuncDecl)
			if !ok || fn.Recv != nil || fn.Body == nil {
				continue
			}
			called := map[string]bool{}
			ast.Inspect(fn.Body, func(n ast.Node) bool {
				if c, ok := n.(*ast.CallExpr); ok {
					if id, ok := c.Fun.(*ast.Ident); ok {
						called[id.Name] = true
					}
				}
				return true
			})
			calls[fn.Name.Name] = called
		}
	}
	reaches := map[string]bool{marker: true}
	for changed := true; changed; {
		changed = false
		for fn, called := range calls {
			if reaches[fn] {
				continue
			}
			for c := range called {
				if reaches[c] {
					reaches[fn], changed = true, true
					break
				}
			}
		}
	}
	var tests []string
	for fn := range calls {
		if reaches[fn] && strings.HasPrefix(fn, "Test") && fn != "TestMain" {
			tests = append(tests, fn)
		}
	}
	slices.Sort(tests)
	return tests
}

package controlplane

import (
	"go/parser"
	"go/token"
	"io/fs"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
)

// module is the module path of our own packages.
const module = "citybridge"

// TestPackageImports holds the code to the package layout (DESIGN.md,
// docs/ARCHITECTURE.md): the control plane imports nothing else of ours
// (no media, no wire protocol: the floor's words are its own) and nothing
// of pion; sfu imports pion and nothing else outside the standard
// library; web imports nothing of ours. Each folder's own packages may
// import each other. Only non-test files count: a test may take a
// fixture from elsewhere (store_test.go reads deploy's sample registry).
func TestPackageImports(t *testing.T) {
	ours := func(p string) bool { return p == module || strings.HasPrefix(p, module+"/") }
	pion := func(p string) bool { return strings.HasPrefix(p, "github.com/pion/") }
	for _, tc := range []struct {
		folder string
		rule   string
		// may says whether an import from outside the standard library
		// and the folder's own packages is allowed.
		may func(path string) bool
	}{
		{"controlplane", "nothing else of ours, no pion", func(p string) bool { return !ours(p) && !pion(p) }},
		// sfu/record writes Matroska with ebml-go (its one muxer).
		{"sfu", "pion only, and ebml-go", func(p string) bool { return pion(p) || strings.HasPrefix(p, "github.com/at-wat/ebml-go/") }},
		{"web", "nothing of ours", func(p string) bool { return !ours(p) }},
	} {
		own := module + "/" + tc.folder
		files := 0
		err := filepath.WalkDir(filepath.Join("..", tc.folder), func(path string, d fs.DirEntry, err error) error {
			if err != nil {
				return err
			}
			name := d.Name()
			if d.IsDir() {
				if path != filepath.Join("..", tc.folder) && (name == "testdata" || strings.HasPrefix(name, ".") || strings.HasPrefix(name, "_")) {
					return filepath.SkipDir
				}
				return nil
			}
			if !strings.HasSuffix(name, ".go") || strings.HasSuffix(name, "_test.go") {
				return nil
			}
			files++
			f, err := parser.ParseFile(token.NewFileSet(), path, nil, parser.ImportsOnly)
			if err != nil {
				return err
			}
			for _, spec := range f.Imports {
				p, _ := strconv.Unquote(spec.Path.Value)
				stdlib := !ours(p) && !strings.Contains(strings.Split(p, "/")[0], ".")
				if stdlib || p == own || strings.HasPrefix(p, own+"/") {
					continue
				}
				if !tc.may(p) {
					t.Errorf("%s imports %s; %s may import %s", path, p, tc.folder, tc.rule)
				}
			}
			return nil
		})
		if err != nil {
			t.Errorf("%s: %v", tc.folder, err)
		}
		if files == 0 {
			t.Errorf("%s: no Go files found: the test no longer checks it", tc.folder)
		}
	}
}

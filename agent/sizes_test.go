package agent

import (
	"go/ast"
	"go/parser"
	"go/token"
	"io/fs"
	"path/filepath"
	"strings"
	"testing"
)

// The code stays readable in pieces: no non-test file over 400 lines, no function over 80,
// no package of the product over 1,500 non-test lines (bench and systemtest aside).
func TestSizesStayReadable(t *testing.T) {
	const maxFile, maxFunc, maxPackage = 400, 80, 1500
	pkgLines := map[string]int{}
	files := 0
	err := filepath.WalkDir("..", func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		name := d.Name()
		if d.IsDir() {
			if p != ".." && (strings.HasPrefix(name, ".") || name == "testdata") {
				return filepath.SkipDir
			}
			return nil
		}
		if !strings.HasSuffix(name, ".go") || strings.HasSuffix(name, "_test.go") {
			return nil
		}
		fset := token.NewFileSet()
		f, err := parser.ParseFile(fset, p, nil, 0)
		if err != nil {
			return err
		}
		files++
		rel, _ := filepath.Rel("..", p)
		lines := fset.File(f.Pos()).LineCount()
		if lines > maxFile {
			t.Errorf("%s: %d lines (at most %d)", rel, lines, maxFile)
		}
		for _, decl := range f.Decls {
			if fn, ok := decl.(*ast.FuncDecl); ok {
				if n := fset.Position(fn.End()).Line - fset.Position(fn.Pos()).Line + 1; n > maxFunc {
					t.Errorf("%s: func %s: %d lines (at most %d)", rel, fn.Name.Name, n, maxFunc)
				}
			}
		}
		dir := filepath.Dir(rel)
		if top := strings.Split(dir, string(filepath.Separator))[0]; top != "bench" && top != "systemtest" {
			pkgLines[dir] += lines
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if files < 50 {
		t.Fatalf("walked %d Go files; the walk is broken", files)
	}
	for dir, n := range pkgLines {
		if n > maxPackage {
			t.Errorf("package %s: %d non-test lines (at most %d): split it along its concerns", dir, n, maxPackage)
		}
	}
}

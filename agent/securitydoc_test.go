package agent

import (
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
)

// docs/security.md's table names tests that exist (so it cannot drift from the suite).
func TestSecurityDocNamesRealTests(t *testing.T) {
	doc, err := os.ReadFile("../docs/security.md")
	if err != nil {
		t.Fatal(err)
	}
	var all strings.Builder
	filepath.WalkDir("..", func(p string, d os.DirEntry, err error) error {
		if err == nil && strings.HasSuffix(p, "_test.go") {
			b, _ := os.ReadFile(p)
			all.Write(b)
		}
		return nil
	})
	names := regexp.MustCompile(`\bTest[A-Z]\w+`).FindAllString(string(doc), -1)
	if len(names) < 10 {
		t.Fatalf("only %d test names in docs/security.md", len(names))
	}
	for _, n := range names {
		if !strings.Contains(all.String(), "func "+n+"(") {
			t.Errorf("docs/security.md names %s, which is not a test", n)
		}
	}
}

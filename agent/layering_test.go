package agent

import (
	"os"
	"os/exec"
	"sort"
	"strings"
	"testing"
)

// The module's import graph is the one docs/design.md states.
func TestImportGraphMatchesDesign(t *testing.T) {
	raw, err := os.ReadFile("../docs/design.md")
	if err != nil {
		t.Fatal(err)
	}
	doc := string(raw)
	i, j := strings.Index(doc, "<!-- imports -->"), strings.Index(doc, "<!-- /imports -->")
	if i < 0 || j < i {
		t.Fatal("docs/design.md has no <!-- imports --> block")
	}
	want := strings.TrimSpace(doc[i+len("<!-- imports -->") : j])
	const mod = "github.com/ota-agent/ota-agent/"
	cmd := exec.Command("go", "list", "-f", "{{.ImportPath}} {{join .Imports \" \"}}", "./...")
	cmd.Dir = ".."
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("go list: %v", err)
	}
	var lines []string
	for _, l := range strings.Split(strings.TrimSpace(string(out)), "\n") {
		f := strings.Fields(l)
		if strings.HasPrefix(f[0], mod+"systemtest") {
			continue // test-only packages (build tag system)
		}
		var deps []string
		for _, d := range f[1:] {
			if strings.HasPrefix(d, mod) {
				deps = append(deps, strings.TrimPrefix(d, mod))
			}
		}
		sort.Strings(deps)
		lines = append(lines, strings.TrimSpace(strings.TrimPrefix(f[0], mod)+": "+strings.Join(deps, ", ")))
	}
	sort.Strings(lines)
	var wantLines []string
	for _, l := range strings.Split(want, "\n") {
		wantLines = append(wantLines, strings.TrimSpace(l))
	}
	sort.Strings(wantLines)
	if got := strings.Join(lines, "\n"); got != strings.Join(wantLines, "\n") {
		t.Fatalf("the import graph differs from docs/design.md:\n%s\nwant\n%s", got, strings.Join(wantLines, "\n"))
	}
}

// The AWS SDK (ota-release publish, ota-testserver serve --aws-*) is never linked into the
// agent: its size stays (bench size table).
func TestAgentLinksNoAWS(t *testing.T) {
	aws := func(cmd string) []string {
		out, err := exec.Command("go", "list", "-deps", "-tags", "nethttpomithttp2", "../cmd/"+cmd).Output()
		if err != nil {
			t.Fatalf("go list -deps: %v", err)
		}
		var found []string
		for _, dep := range strings.Fields(string(out)) {
			if strings.HasPrefix(dep, "github.com/aws/") || strings.HasSuffix(dep, "/internal/publish") {
				found = append(found, dep)
			}
		}
		return found
	}
	if got := aws("ota-agent"); len(got) > 0 {
		t.Fatalf("ota-agent links %v", got)
	}
	if len(aws("ota-release")) == 0 {
		t.Fatal("the check sees no AWS package in ota-release either: it cannot tell")
	}
}

package agent

import (
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
)

// Every citation of the wire contract in the repository ("protocol.md 3.3") names a section
// docs/protocol.md has, and nothing cites documents a user's clone lacks.
func TestProtocolCitationsResolve(t *testing.T) {
	raw, err := os.ReadFile("../docs/protocol.md")
	if err != nil {
		t.Fatal(err)
	}
	sections := map[string]bool{}
	for _, m := range regexp.MustCompile(`(?m)^##+ ([0-9]+(?:\.[0-9]+)?)\.? `).FindAllStringSubmatch(string(raw), -1) {
		sections[m[1]] = true
	}
	cmd := exec.Command("git", "grep", "-n", "-I", "-e", "protocol.md [0-9]", "-e", "PROTOCOL", "-e", "DESIGN-NOTES", "--", ".", ":!bench/peers.md", ":!docs/protocol.md", ":!agent/protocoldoc_test.go")
	cmd.Dir = ".."
	out, err := cmd.Output()
	if err != nil && len(out) == 0 {
		if _, ok := err.(*exec.ExitError); !ok {
			t.Skipf("SKIPPED: git grep: %v", err)
		}
	}
	cite := regexp.MustCompile(`protocol\.md ([0-9]+(?:\.[0-9]+)?)`)
	n := 0
	for _, line := range strings.Split(strings.TrimSpace(string(out)), "\n") {
		if line == "" {
			continue
		}
		if strings.Contains(line, "PROTOCOL") && !strings.Contains(line, "protocol.md") || strings.Contains(line, "DESIGN-NOTES") {
			t.Errorf("cites a document outside the repository: %s", line)
		}
		for _, m := range cite.FindAllStringSubmatch(line, -1) {
			n++
			if !sections[m[1]] {
				t.Errorf("cites protocol.md %s, which docs/protocol.md lacks: %s", m[1], line)
			}
		}
	}
	if n < 10 {
		t.Fatalf("found %d citations; the grep is broken", n)
	}
}

// Every source file the documents name ("internal/update/machine.go") is in the repository.
func TestDocumentedFilesExist(t *testing.T) {
	files := []string{"../README.md"}
	docs, _ := filepath.Glob("../docs/*.md")
	files = append(files, docs...)
	path := regexp.MustCompile(`\b(?:agent|internal/[a-z]+|store|installer|packaging|testserver|cmd/[a-z-]+)/[a-z_]+\.go\b`)
	n := 0
	for _, f := range files {
		raw, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		for _, p := range path.FindAllString(string(raw), -1) {
			n++
			if _, err := os.Stat(filepath.Join("..", p)); err != nil {
				t.Errorf("%s names %s, which the repository lacks", f, p)
			}
		}
	}
	if n < 5 {
		t.Fatalf("found %d file names in the documents; the pattern is broken", n)
	}
}

package update

import (
	"context"
	"go/ast"
	"go/parser"
	gotoken "go/token"
	"io"
	"log/slog"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/ota-agent/ota-agent/internal/config"
	"github.com/ota-agent/ota-agent/internal/trust"
	"github.com/ota-agent/ota-agent/store"
)

// Every state has a handler (but Idle, where a run ends), and docs/design.md lists exactly
// the machine's states, in order.
func TestStateTableMatchesDesign(t *testing.T) {
	table := handlers()
	for _, s := range States() {
		if _, ok := table[s]; ok == (s == Idle) {
			t.Errorf("state %s: handler present %v", s, ok)
		}
	}
	if len(table) != len(States())-1 {
		t.Errorf("the table has %d handlers for %d states", len(table), len(States()))
	}
	raw, err := os.ReadFile("../../docs/design.md")
	if err != nil {
		t.Fatal(err)
	}
	doc := string(raw)
	i, j := strings.Index(doc, "<!-- states -->"), strings.Index(doc, "<!-- /states -->")
	if i < 0 || j < i {
		t.Fatal("docs/design.md has no <!-- states --> block")
	}
	var listed []string
	for _, line := range strings.Split(doc[i:j], "\n") {
		if strings.HasPrefix(line, "    ") && !strings.HasPrefix(line, "     ") {
			listed = append(listed, strings.Fields(line)[0])
		}
	}
	var want []string
	for _, s := range States() {
		want = append(want, string(s))
	}
	if strings.Join(listed, " ") != strings.Join(want, " ") {
		t.Fatalf("docs/design.md lists %v; the machine has %v", listed, want)
	}
}

// A handler that would loop is stopped by the transition cap, with the state named.
func TestTransitionCap(t *testing.T) {
	db, err := store.OpenTemp()
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	a := &Engine{Cfg: &config.Config{}, Log: slog.New(slog.NewTextHandler(io.Discard, nil)), Clock: trust.NewClock(time.Now, time.Time{}), Status: func(string) {}}
	j, err := a.newJob(db, nil, store.Journal{})
	if err != nil {
		t.Fatal(err)
	}
	j.handlers[Commit] = func(*job, context.Context) (State, error) { return Commit, nil }
	err = j.run(context.Background(), Commit)
	if err == nil || !strings.Contains(err.Error(), "32 transitions without reaching idle (at commit)") {
		t.Fatalf("run = %v", err)
	}
}

// Recover's switch names every state a journal can hold (all but ask, which is never
// journalled, and idle): none falls through to "a step this agent does not know".
func TestRecoverCoversEveryState(t *testing.T) {
	fs := gotoken.NewFileSet()
	names := map[string]string{} // value → constant name, from machine.go
	m, err := parser.ParseFile(fs, "machine.go", nil, 0)
	if err != nil {
		t.Fatal(err)
	}
	ast.Inspect(m, func(n ast.Node) bool {
		if vs, ok := n.(*ast.ValueSpec); ok && len(vs.Values) == 1 {
			if lit, ok := vs.Values[0].(*ast.BasicLit); ok && lit.Kind == gotoken.STRING {
				names[strings.Trim(lit.Value, `"`)] = vs.Names[0].Name
			}
		}
		return true
	})
	f, err := parser.ParseFile(fs, "recover.go", nil, 0)
	if err != nil {
		t.Fatal(err)
	}
	handled := map[string]bool{}
	ast.Inspect(f, func(n ast.Node) bool {
		fn, ok := n.(*ast.FuncDecl)
		if !ok || fn.Name.Name != "Recover" {
			return true
		}
		ast.Inspect(fn.Body, func(n ast.Node) bool {
			if cc, ok := n.(*ast.CaseClause); ok {
				for _, e := range cc.List {
					if id, ok := e.(*ast.Ident); ok {
						handled[id.Name] = true
					}
				}
			}
			return true
		})
		return false
	})
	for _, s := range States() {
		if s == Ask || s == Idle {
			continue
		}
		if !handled[names[string(s)]] {
			t.Errorf("Recover has no case for %s (%q)", s, names[string(s)])
		}
	}
}

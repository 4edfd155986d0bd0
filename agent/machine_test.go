package agent

import (
	"context"
	"os"
	"strings"
	"testing"

	"github.com/ota-agent/ota-agent/testserver"
)

// Every state has a handler (but Idle, where a run ends), and docs/design.md lists exactly
// the machine's states, in order.
func TestStateTableMatchesDesign(t *testing.T) {
	for _, s := range States() {
		if _, ok := machine[s]; ok == (s == Idle) {
			t.Errorf("state %s: handler present %v", s, ok)
		}
	}
	if len(machine) != len(States())-1 {
		t.Errorf("the table has %d handlers for %d states", len(machine), len(States()))
	}
	raw, err := os.ReadFile("../docs/design.md")
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
	e := newEnv(t, testserver.Options{})
	a := e.agent(e.config(""))
	db, err := a.OpenDB()
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	saved := machine[Committed]
	machine[Committed] = func(*job, context.Context) (State, error) { return Committed, nil }
	defer func() { machine[Committed] = saved }()
	err = (&job{a: a, db: db}).run(context.Background(), Committed)
	if err == nil || !strings.Contains(err.Error(), "32 transitions without reaching idle (at committed)") {
		t.Fatalf("run = %v", err)
	}
}

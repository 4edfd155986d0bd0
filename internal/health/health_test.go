package health

import (
	"context"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/ota-agent/ota-agent/installer"
	"github.com/ota-agent/ota-agent/internal/config"
)

func checker(t *testing.T, set func(*config.Config)) Checker {
	t.Helper()
	c := &config.Config{}
	c.Health.Grace, c.Health.HTTPStatus = 150*time.Millisecond, 200
	set(c)
	return Checker{Cfg: c, Log: slog.New(slog.NewTextHandler(io.Discard, nil)), Status: func(string) {}}
}

// A generation is judged when any check is configured; the units restarted are those of the
// apps whose bytes changed.
func TestGatedAndUnitsOf(t *testing.T) {
	if checker(t, func(*config.Config) {}).Gated() {
		t.Fatal("gated with no checks")
	}
	c := checker(t, func(c *config.Config) {
		c.Apps = map[string]config.AppConfig{"sb": {Units: []string{"sb.service"}}, "cam": {Units: []string{"cam.service", "sb.service"}}}
	})
	if !c.Gated() {
		t.Fatal("units of apps do not gate")
	}
	from := map[string]installer.App{"sb": {MD5: "1"}, "cam": {MD5: "2"}}
	to := map[string]installer.App{"sb": {MD5: "1"}, "cam": {MD5: "3"}}
	if got := strings.Join(c.UnitsOf(from, to), " "); got != "cam.service sb.service" {
		t.Fatalf("units of the changed app: %q", got)
	}
	if got := c.UnitsOf(from, from); len(got) != 0 {
		t.Fatalf("nothing changed: %v", got)
	}
}

// The probes must answer right by the end of the grace: a wrong status and a closed port
// fail the judgement, a right answer passes, and the health hook runs last.
func TestJudgeProbes(t *testing.T) {
	status := http.StatusOK
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { w.WriteHeader(status) }))
	defer srv.Close()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	closed := l.Addr().String()
	l.Close()
	ctx := context.Background()
	ok := checker(t, func(c *config.Config) { c.Health.HTTP, c.Health.TCP = srv.URL, srv.Listener.Addr().String() })
	if err := ok.Judge(ctx, nil, nil); err != nil {
		t.Fatalf("answering probes: %v", err)
	}
	status = http.StatusServiceUnavailable
	if err := ok.Judge(ctx, nil, nil); err == nil || !strings.Contains(err.Error(), "answered 503, want 200") {
		t.Fatalf("a 503: %v", err)
	}
	status = http.StatusOK
	if err := checker(t, func(c *config.Config) { c.Health.TCP = closed }).Judge(ctx, nil, nil); err == nil || !strings.Contains(err.Error(), "health.tcp") {
		t.Fatalf("a closed port: %v", err)
	}
	hook := checker(t, func(c *config.Config) { c.Health.HTTP, c.Hooks.Health = srv.URL, "exit 4" })
	if err := hook.Judge(ctx, nil, nil); err == nil || !strings.Contains(err.Error(), "hooks.health: exited with status 4") {
		t.Fatalf("the hook after the probes: %v", err)
	}
}

// A unit's trouble during the trial is named.
func TestUnitTrouble(t *testing.T) {
	base := unitState{active: "active", sub: "running", restarts: 1, invocation: "a"}
	for _, c := range []struct {
		st   unitState
		want string
	}{
		{unitState{active: "failed"}, "failed"},
		{unitState{active: "inactive", sub: "dead"}, "stopped (dead)"},
		{unitState{active: "activating", sub: "auto-restart", restarts: 1, invocation: "a"}, "waits to be restarted"},
		{unitState{active: "active", sub: "running", restarts: 3, invocation: "a"}, "restarted 2 time(s)"},
		{unitState{active: "active", sub: "running", restarts: 1, invocation: "b"}, "a new invocation"},
	} {
		if err := unitTrouble("x.service", base, c.st); err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%+v: %v, want %q", c.st, err, c.want)
		}
	}
	if err := unitTrouble("x.service", base, base); err != nil {
		t.Errorf("a steady unit: %v", err)
	}
}

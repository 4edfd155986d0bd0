package packaging

import (
	"strings"
	"testing"
	"time"

	"github.com/ota-agent/ota-agent/packaging/ramp"
)

func TestPhase(t *testing.T) {
	start := time.Unix(1_800_000_000, 0)
	c := Class{V: 2, Ramp: "1800000000:100@100000"}
	ph, err := c.Phase(ramp.Full/2, start.Add(50_000*time.Second)) // level = point: not in yet
	if err != nil || ph.In || ph.Turn != start.Add(50_001*time.Second) {
		t.Fatalf("half-way point before its turn: %+v %v", ph, err)
	}
	if ph, _ := c.Phase(ramp.Full/2, start.Add(50_001*time.Second)); !ph.In {
		t.Fatalf("at its turn: %+v", ph)
	}
	c.Halted = start.Add(10_000 * time.Second).Unix()
	if ph, _ := c.Phase(ramp.Full/2, start.Add(90_000*time.Second)); ph.In || !ph.Halted || ph.Level != ramp.Full/10 {
		t.Fatalf("halted at 10%%: %+v", ph)
	}
	if ph, _ := (Class{V: 2}).Phase(ramp.Full-1, start); !ph.In {
		t.Fatalf("no ramp: %+v", ph)
	}
	if ph, _ := (Class{V: 2, Halted: 1}).Phase(0, start); ph.In {
		t.Fatalf("halted without a ramp: %+v", ph)
	}
}

// The ramp and the halt are inside the signature; a statement without them signs what it did
// before ramps existed.
func TestRampIsSigned(t *testing.T) {
	st := Statement{App: "a", Version: "1", SHA256: strings.Repeat("0", 64), MD5: strings.Repeat("0", 32), Size: 1, Serial: 1, Class: Class{V: 2, Channel: "prod"}}
	plain := string(st.SignedBytes())
	if strings.Contains(plain, "ramp") || !strings.HasSuffix(plain, "cpu_arch=\n") {
		t.Fatalf("a statement without a ramp signs %q", plain)
	}
	st.Ramp, st.Halted = "1800000000:100@172800", 1800000100
	if got := string(st.SignedBytes()); got != plain+"ramp=1800000000:100@172800\nhalted=1800000100\n" {
		t.Fatalf("signed bytes %q", got)
	}
	e := Entry{LatestVersion: "1", StatusCode: 200, Class: Class{V: 1, Ramp: "1800000000:100@172800"}}
	if err := e.validate("a"); err == nil {
		t.Fatal("a ramp in a v1 statement accepted")
	}
	e.Class = Class{V: 2, Ramp: "1800000000:100@1,"}
	if err := e.validate("a"); err == nil {
		t.Fatal("a malformed ramp accepted")
	}
}

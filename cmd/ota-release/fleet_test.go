package main

import (
	"bytes"
	"strings"
	"testing"
	"time"
)

// The fleet view folds each device's events in time order: a deferral followed by the install
// counts as installed, a failure then a rollback as rolled back (and failed), a device still
// waiting as deferred.
func TestFleetView(t *testing.T) {
	t0 := time.Date(2027, 1, 4, 8, 0, 0, 0, time.UTC)
	at := func(m int) time.Time { return t0.Add(time.Duration(m) * time.Minute) }
	rel := map[string]string{"scoreboard": "1.1.0"}
	f := view(map[string][]fleetEvent{
		"gw-1": {{Kind: "installed", Time: at(0), Apps: map[string]string{"scoreboard": "1.0.0"}}, {Kind: "deferred", Time: at(1), Apps: rel}, {Kind: "installed", Time: at(60), Apps: rel}},
		"gw-2": {{Kind: "installed", Time: at(0), Apps: map[string]string{"scoreboard": "1.0.0"}}, {Kind: "deferred", Time: at(2), Apps: rel}},
		"gw-3": {{Kind: "installed", Time: at(0), Apps: map[string]string{"scoreboard": "1.0.0"}}, {Kind: "failed", Time: at(5), Apps: rel, Class: "rejected"},
			{Kind: "rolled_back", Time: at(30), Apps: rel, Reason: "health check failed"}},
	})
	var got Release
	for _, r := range f.Releases {
		if r.App == "scoreboard" && r.Version == "1.1.0" {
			got = r
		}
	}
	if got.Offered != 3 || got.Installed != 1 || got.Deferred != 1 || got.RolledBack != 1 || got.Failed["rejected"] != 1 || !got.LastSeen.Equal(at(60)) || f.Devices != 3 {
		t.Fatalf("scoreboard 1.1.0: %+v (devices %d)", got, f.Devices)
	}
	var out bytes.Buffer
	printFleet(&out, f)
	if !strings.Contains(out.String(), "1 (rejected 1)") || !strings.Contains(out.String(), "3 devices reporting") {
		t.Fatalf("text view:\n%s", out.String())
	}
}

// Package metrics writes metrics.textfile in the Prometheus text format, for node_exporter's
// textfile collector, atomically (a scrape never reads half a file). The format is written
// directly (client_golang would cost the armv7 binary more than it gives); the tests check
// it with the real parser.
package metrics

import (
	"fmt"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strings"

	"github.com/ota-agent/ota-agent/internal/atomicfile"
	"github.com/ota-agent/ota-agent/store"
)

// Snapshot is what the metrics say: the agent's account after a check.
type Snapshot struct {
	LastCheck  *store.CheckRecord
	State      *store.State // the active generation (nil: none)
	InProgress string       // the update machine's step ("" when idle)
	Refused    int
	OSTrying   *bool  // a new OS image waits for its reboot or health check (nil: no partitions)
	KeySet     *int64 // the release key set held (nil: no trust keys)
	Stale      *bool  // no fresh ota-timestamp.release for trust.max_staleness (nil: not watched)
	Counters   store.Counters
}

// Write replaces the file at path with s.
func Write(path string, s Snapshot) error {
	var b strings.Builder
	gauge := func(name, help string, v any, labels ...string) {
		fmt.Fprintf(&b, "# HELP %s %s\n# TYPE %s gauge\n%s%s %v\n", name, help, name, name, labelSet(labels), v)
	}
	if c := s.LastCheck; c != nil {
		gauge("ota_agent_last_check_timestamp_seconds", "When the last check ended (unix time).", c.Time.Unix())
		gauge("ota_agent_last_check_success", "1 when the last check updated or found nothing to do.", boolInt(c.Result != "failed"))
		gauge("ota_agent_last_check_duration_seconds", "How long the last check took.", c.Duration.Seconds())
	}
	status, gen, damaged := "none", int64(0), 0
	if st := s.State; st != nil {
		status, gen, damaged = st.Status, st.N, len(st.Damaged)
		fmt.Fprintf(&b, "# HELP ota_agent_app_info The installed apps (value 1).\n# TYPE ota_agent_app_info gauge\n")
		for _, app := range slices.Sorted(maps.Keys(st.Apps)) {
			x := st.Apps[app]
			fmt.Fprintf(&b, "ota_agent_app_info%s 1\n", labelSet([]string{"app", app, "version", x.Version, "md5", x.MD5, "slot", st.Slot}))
		}
	}
	gauge("ota_agent_generation", "The active generation's number (0: nothing installed).", gen)
	fmt.Fprintf(&b, "# HELP ota_agent_status The active generation's status (one is 1).\n# TYPE ota_agent_status gauge\n")
	for _, st := range []string{"none", store.StatusTrial, store.StatusCommitted} {
		fmt.Fprintf(&b, "ota_agent_status%s %d\n", labelSet([]string{"status", st}), boolInt(st == status))
	}
	gauge("ota_agent_update_in_progress", "1 while an update runs (or was interrupted), with the machine's state.", boolInt(s.InProgress != ""), "state", s.InProgress)
	gauge("ota_agent_damaged_apps", "Apps found changed on disk, to be fetched again.", damaged)
	gauge("ota_agent_refused_releases", "Releases this device will not install again.", s.Refused)
	if s.OSTrying != nil {
		gauge("ota_agent_os_trying", "1 while a new OS image waits for its reboot or its health check.", boolInt(*s.OSTrying))
	}
	if s.KeySet != nil {
		gauge("ota_agent_trust_key_set_version", "The release key set held (0: trust.keys as configured).", *s.KeySet)
	}
	if s.Stale != nil {
		gauge("ota_agent_trust_stale", "1 when no unexpired ota-timestamp.release was held for trust.max_staleness.", boolInt(*s.Stale))
	}
	counters(&b, s.Counters)
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return err
	}
	return atomicfile.Write(path, []byte(b.String()), 0o644)
}

func counters(b *strings.Builder, c store.Counters) {
	for _, x := range []struct {
		name, help string
		v          int64
	}{
		{"ota_agent_checks_total", "Checks run.", c.Checks},
		{"ota_agent_failed_checks_total", "Checks that failed.", c.FailedChecks},
		{"ota_agent_updates_total", "Generations installed.", c.Updates},
		{"ota_agent_rollbacks_total", "Generations rolled back.", c.Rollbacks},
		{"ota_agent_downloaded_bytes_total", "Bytes received from the server and the firmware CDN.", c.DownloadedBytes},
		{"ota_agent_delta_saved_bytes_total", "Bytes not downloaded thanks to patches and chunk indexes (file sizes minus bytes downloaded).", c.DeltaSavedBytes},
	} {
		fmt.Fprintf(b, "# HELP %s %s\n# TYPE %s counter\n%s %d\n", x.name, x.help, x.name, x.name, x.v)
	}
}

func boolInt(b bool) int {
	if b {
		return 1
	}
	return 0
}

// labelSet formats name, value pairs as {name="value",...} with the text format's escapes.
func labelSet(kv []string) string {
	if len(kv) == 0 {
		return ""
	}
	esc := strings.NewReplacer(`\`, `\\`, `"`, `\"`, "\n", `\n`)
	var parts []string
	for i := 0; i+1 < len(kv); i += 2 {
		parts = append(parts, kv[i]+`="`+esc.Replace(kv[i+1])+`"`)
	}
	return "{" + strings.Join(parts, ",") + "}"
}

package agent

import (
	"fmt"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strings"

	"github.com/ota-agent/ota-agent/store"
)

// writeMetrics writes metrics.textfile in the Prometheus text format, for node_exporter's
// textfile collector: a new file in the same directory, fsync'd, renamed over the old one, so
// a scrape never reads half a file. The format is written directly (client_golang would
// cost the armv7 binary more than it gives); the tests check it with the real parser.
func (a *Agent) writeMetrics(db *store.DB) error {
	path := a.Cfg.Metrics.Textfile
	if path == "" {
		return nil
	}
	path = a.Cfg.Path(path)
	var b strings.Builder
	gauge := func(name, help string, v any, labels ...string) {
		fmt.Fprintf(&b, "# HELP %s %s\n# TYPE %s gauge\n%s%s %v\n", name, help, name, name, labelSet(labels), v)
	}
	counter := func(name, help string, v int64) {
		fmt.Fprintf(&b, "# HELP %s %s\n# TYPE %s counter\n%s %d\n", name, help, name, name, v)
	}
	if c, err := db.LastCheck(); err == nil && c != nil {
		ok := 0
		if c.Result != ResultFailed {
			ok = 1
		}
		gauge("ota_agent_last_check_timestamp_seconds", "When the last check ended (unix time).", c.Time.Unix())
		gauge("ota_agent_last_check_success", "1 when the last check updated or found nothing to do.", ok)
		gauge("ota_agent_last_check_duration_seconds", "How long the last check took.", c.Duration.Seconds())
	}
	s, err := db.State()
	if err != nil {
		return err
	}
	status, gen, damaged := "none", int64(0), 0
	if s != nil {
		status, gen, damaged = s.Status, s.N, len(s.Damaged)
		fmt.Fprintf(&b, "# HELP ota_agent_app_info The installed apps (value 1).\n# TYPE ota_agent_app_info gauge\n")
		for _, app := range slices.Sorted(maps.Keys(s.Apps)) {
			x := s.Apps[app]
			fmt.Fprintf(&b, "ota_agent_app_info%s 1\n", labelSet([]string{"app", app, "version", x.Version, "md5", x.MD5, "slot", s.Slot}))
		}
	}
	gauge("ota_agent_generation", "The active generation's number (0: nothing installed).", gen)
	fmt.Fprintf(&b, "# HELP ota_agent_status The active generation's status (one is 1).\n# TYPE ota_agent_status gauge\n")
	for _, st := range []string{"none", store.StatusTrial, store.StatusCommitted} {
		v := 0
		if st == status {
			v = 1
		}
		fmt.Fprintf(&b, "ota_agent_status%s %d\n", labelSet([]string{"status", st}), v)
	}
	inProgress := ""
	if rec, err := db.Journal(); err == nil && rec != nil {
		inProgress = rec.Step
	}
	gauge("ota_agent_update_in_progress", "1 while an update runs (or was interrupted), with the machine's state.", boolInt(inProgress != ""), "state", inProgress)
	gauge("ota_agent_damaged_apps", "Apps found changed on disk, to be fetched again.", damaged)
	if refused, err := db.Refusals(); err == nil {
		gauge("ota_agent_refused_releases", "Releases this device will not install again.", len(refused))
	}
	if o := a.OSStatus(db); o != nil {
		gauge("ota_agent_os_trying", "1 while a new OS image waits for its reboot or its health check.", boolInt(o.Try != ""))
	}
	if t := a.trustReport(db); t != nil {
		gauge("ota_agent_trust_key_set_version", "The release key set held (0: trust.keys as configured).", t.KeySetVersion)
		if a.Cfg.Trust.MaxStaleness > 0 {
			gauge("ota_agent_trust_stale", "1 when no unexpired ota-timestamp.release was held for trust.max_staleness.", boolInt(t.Stale))
		}
	}
	c, err := db.Counters()
	if err != nil {
		return err
	}
	counter("ota_agent_checks_total", "Checks run.", c.Checks)
	counter("ota_agent_failed_checks_total", "Checks that failed.", c.FailedChecks)
	counter("ota_agent_updates_total", "Generations installed.", c.Updates)
	counter("ota_agent_rollbacks_total", "Generations rolled back.", c.Rollbacks)
	counter("ota_agent_downloaded_bytes_total", "Bytes received from the server and the firmware CDN.", c.DownloadedBytes)
	counter("ota_agent_delta_saved_bytes_total", "Bytes not downloaded thanks to patches and chunk indexes (file sizes minus bytes downloaded).", c.DeltaSavedBytes)
	return writeAtomic(path, []byte(b.String()))
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

// writeAtomic replaces path with data: a temporary file beside it, fsync'd, renamed.
func writeAtomic(path string, data []byte) error {
	dir := filepath.Dir(path)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	f, err := os.CreateTemp(dir, "."+filepath.Base(path)+".*")
	if err != nil {
		return err
	}
	defer os.Remove(f.Name())
	_, err = f.Write(data)
	if err == nil {
		err = f.Chmod(0o644)
	}
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return fmt.Errorf("metrics %s: %w", path, err)
	}
	return os.Rename(f.Name(), path)
}

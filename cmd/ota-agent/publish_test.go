package main

import (
	"bufio"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/ota-agent/ota-agent/internal/catalog"
	"github.com/ota-agent/ota-agent/internal/publish/publishtest"
	"github.com/ota-agent/ota-agent/internal/testenv"
)

// The operator's loop end to end, with no catalog directory between the publisher and the
// server: `ota-release publish` into S3 + DynamoDB (moto_server), `ota-testserver serve
// --aws-* --reference-only` serving that deployment through the same SDK as the unmodified
// reference does (the statements and the patch come from the bucket), `ota-agent check --once`
// installing it, a 304 next; then a second release published with a patch and installed by
// patch.
func TestPublishedDeploymentServesTheAgent(t *testing.T) {
	endpoint := publishtest.Moto(t)
	publishtest.Create(t, endpoint, "firmware", "rows")
	dir := t.TempDir()
	priv, pubPath, err := testenv.Keys(dir)
	if err != nil {
		t.Fatal(err)
	}
	privPath := filepath.Join(dir, "release.pem")
	os.WriteFile(privPath, priv, 0o600)
	catDir := filepath.Join(dir, "catalog")
	if _, err := catalog.WriteSample(catDir, 256<<10, 9, priv); err != nil {
		t.Fatal(err)
	}
	publish := func() {
		t.Helper()
		out, err := otaRelease(t, "publish", "--catalog", catDir, "--bucket", "firmware", "--table", "rows", "--region", publishtest.Region, "--endpoint", endpoint)
		if err != nil || !strings.Contains(out, "published: ") {
			t.Fatalf("ota-release publish: %v\n%s", err, out)
		}
	}
	publish()

	srv := exec.Command(tool(t, "ota-testserver"), "serve", "--listen", "127.0.0.1:0", "--aws-bucket", "firmware", "--aws-table", "rows",
		"--aws-region", publishtest.Region, "--aws-endpoint", endpoint, "--aws-refresh", "200ms", "--reference-only")
	stdout, _ := srv.StdoutPipe()
	var stderr strings.Builder
	srv.Stderr = &stderr
	if err := srv.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { srv.Process.Signal(syscall.SIGTERM); srv.Wait() })
	base := ""
	sc := bufio.NewScanner(stdout)
	for base == "" && sc.Scan() {
		if rest, ok := strings.CutPrefix(sc.Text(), "endpoint  "); ok {
			base, _, _ = strings.Cut(rest, "/package")
		}
	}
	if base == "" {
		t.Fatalf("ota-testserver printed no endpoint: %s", stderr.String())
	}
	go func() {
		for sc.Scan() {
		}
	}()

	w := &world{t: t, dir: dir, state: filepath.Join(dir, "state"), cfg: filepath.Join(dir, "config.yaml")}
	cfg := testenv.Config(testenv.ConfigOptions{Base: base, Bucket: "firmware", PubPath: pubPath, StateDir: w.state, Payload: "metadata", Attributes: "{gamer: prod}"})
	os.WriteFile(w.cfg, []byte(cfg), 0o644)

	if r := w.mustAgent("check", "--once"); !strings.Contains(r.stdout, "updated: installed into slot") || !strings.Contains(r.stdout, "scoreboard") {
		t.Fatalf("first check:\n%s%s", r.stdout, r.stderr)
	}
	if r := w.mustAgent("check", "--once"); !strings.Contains(r.stdout, "up-to-date: the server answered 304 Not Modified") {
		t.Fatalf("second check:\n%s%s", r.stdout, r.stderr)
	}

	// scoreboard 1.5.0: the installed 1.0.0 with 16 KiB changed, and a patch from it.
	c, err := catalog.Load(catDir)
	if err != nil {
		t.Fatal(err)
	}
	for i, r := range c.Rows {
		if r.App != "scoreboard" || r.Env != "prod" {
			continue
		}
		old, _ := os.ReadFile(r.Path())
		nw := append([]byte(nil), old...)
		copy(nw[len(nw)/2:], randomBytes(16<<10, 78))
		c.Rows[i].Version, c.Rows[i].File = "1.5.0", "blobs/scoreboard_1.5.0"
		os.WriteFile(filepath.Join(catDir, c.Rows[i].File), nw, 0o644)
		if out, err := otaRelease(t, "delta", r.Path(), filepath.Join(catDir, c.Rows[i].File)); err != nil {
			t.Fatalf("ota-release delta: %v\n%s", err, out)
		}
	}
	if err := c.Save(); err != nil {
		t.Fatal(err)
	}
	if out, err := otaRelease(t, "sign", "--key", privPath, "--catalog", catDir); err != nil {
		t.Fatalf("ota-release sign: %v\n%s", err, out)
	}
	publish()
	// The operator's CloudFront invalidation: the edge forgets the cached 304.
	srv.Process.Signal(syscall.SIGHUP)
	var res deltaResult
	for deadline := time.Now().Add(2 * time.Minute); ; time.Sleep(200 * time.Millisecond) { // generous: moto under a loaded CI
		var r outcome
		r, res = w.checkJSON()
		if r.code != 0 {
			t.Fatalf("check after the second release: exit %d\n%s%s", r.code, r.stdout, r.stderr)
		}
		if res.Result == "updated" || time.Now().After(deadline) {
			break
		}
	}
	sb := res.Apps["scoreboard"]
	if res.Result != "updated" || sb.Version != "1.5.0" || sb.Delivery != "patch" || sb.Downloaded >= sb.Size/4 {
		t.Fatalf("second release: %+v\n%s", res, stderr.String())
	}
}

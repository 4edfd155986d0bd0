package publish

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/ota-agent/ota-agent/internal/catalog"
	"github.com/ota-agent/ota-agent/internal/leakcheck"
	"github.com/ota-agent/ota-agent/internal/publish/publishtest"
	"github.com/ota-agent/ota-agent/packaging"
)

// The tests leave no goroutine of this module running.
func TestMain(m *testing.M) { os.Exit(leakcheck.Run(m)) }

// world is a signed sample catalog and a deployment on moto_server.
type world struct {
	t        *testing.T
	endpoint string
	dir      string
	priv     []byte
	n        int // deployments made
}

func newWorld(t *testing.T) *world {
	endpoint := publishtest.Moto(t)
	dir := t.TempDir()
	priv, _, err := packaging.GenerateKey()
	if err != nil {
		t.Fatal(err)
	}
	// 80 KiB binaries: the sample's beta rows get patches and chunk indexes (64 KiB and more).
	if _, err := catalog.WriteSample(filepath.Join(dir, "cat"), 80<<10, 7, priv); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "cat", "ota-timestamp.release"), []byte(`{"issued":"2026-12-05T00:00:00Z"}`+"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	return &world{t: t, endpoint: endpoint, dir: dir, priv: priv}
}

// deployment makes a new empty bucket and table.
func (w *world) deployment() *Deployment {
	w.t.Helper()
	w.n++
	tg := Target{Bucket: fmt.Sprintf("fw-%d", w.n), Table: fmt.Sprintf("rows-%d", w.n), Region: publishtest.Region, Endpoint: w.endpoint}
	publishtest.Create(w.t, w.endpoint, tg.Bucket, tg.Table)
	d, err := Open(context.Background(), tg)
	if err != nil {
		w.t.Fatal(err)
	}
	return d
}

func (w *world) catalog() *catalog.Catalog {
	w.t.Helper()
	c, err := catalog.Load(filepath.Join(w.dir, "cat"))
	if err != nil {
		w.t.Fatal(err)
	}
	return c
}

// plan is the plan from the catalog to d.
func (w *world) plan(d *Deployment, prune bool) *Plan {
	w.t.Helper()
	p, err := plan(d, w.catalog(), prune)
	if err != nil {
		w.t.Fatal(err)
	}
	return p
}

func plan(d *Deployment, c *catalog.Catalog, prune bool) (*Plan, error) {
	want, err := Desire(c, d.Bucket)
	if err != nil {
		return nil, err
	}
	have, err := d.Read(context.Background())
	if err != nil {
		return nil, err
	}
	return MakePlan(want, have, d.Target, prune)
}

// publish runs the whole plan.
func (w *world) publish(d *Deployment, prune bool) *Result {
	w.t.Helper()
	res, err := d.apply(context.Background(), w.plan(d, prune), 0, nil)
	if err != nil {
		w.t.Fatal(err)
	}
	return res
}

// safe checks what a device can see: every row's binary is in the bucket with the row's
// size and MD5, and a signed row's statement is there too.
func safe(t *testing.T, d *Deployment, when string) {
	t.Helper()
	have, err := d.Read(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	for _, it := range have.Items {
		o, ok := have.Objects[it.Object()]
		if !ok || o.MD5() != it.MD5 || o.Size != it.Size {
			t.Fatalf("%s: row %s names %s (md5 %s, %d bytes), the bucket holds %+v (present %v)", when, it.Key(), it.Object(), it.MD5, it.Size, o, ok)
		}
		if _, ok := have.Objects[it.Object()+".release"]; it.Signed() && !ok {
			t.Fatalf("%s: row %s is signed, its statement %s.release is not in the bucket", when, it.Key(), it.Object())
		}
		if !strings.HasPrefix(it.URL, "s3://"+d.Bucket+"/") {
			t.Fatalf("%s: row %s url %s", when, it.Key(), it.URL)
		}
	}
}

func names(p *Plan) []string {
	var out []string
	for _, s := range p.Steps {
		out = append(out, s.Action+" "+s.Kind+" "+s.Name)
	}
	return out
}

func TestPublishEmptyDeploymentThenNothing(t *testing.T) {
	w := newWorld(t)
	d := w.deployment()
	p := w.plan(d, false)
	c := w.catalog()
	// Every binary, its statement, the beta rows' patches and chunk lists, the timestamp,
	// then the nine rows: binaries first, rows last.
	var kinds []string
	for _, s := range p.Steps {
		if len(kinds) == 0 || kinds[len(kinds)-1] != s.Kind {
			kinds = append(kinds, s.Kind)
		}
	}
	if !slices.Equal(kinds, []string{"binary", "side", "trust", "row"}) {
		t.Fatalf("order of kinds %v\n%s", kinds, strings.Join(names(p), "\n"))
	}
	res, err := d.apply(context.Background(), p, 0, nil)
	if err != nil {
		t.Fatal(err)
	}
	if res.Done != len(p.Steps) || res.Uploaded < int64(len(c.Rows))*80<<10 {
		t.Fatalf("done %d of %d steps, %d bytes", res.Done, len(p.Steps), res.Uploaded)
	}
	safe(t, d, "after publishing")
	if p2 := w.plan(d, true); !p2.InSync() {
		t.Fatalf("a second plan is not empty:\n%s", strings.Join(names(p2), "\n"))
	}
	have, _ := d.Read(context.Background())
	for _, it := range have.Items {
		if it.Release == "" || it.SHA256 == "" || it.Size != 80<<10 || it.Serial == 0 || it.Ident != it.Object() {
			t.Fatalf("row %+v lacks the extension attributes", it)
		}
		if strings.HasPrefix(it.App, "os_") != (it.CPUArch != "") {
			t.Fatalf("row %s cpuArch %q", it.Key(), it.CPUArch)
		}
	}
	var patches int
	for k := range have.Objects {
		if strings.Contains(k, ".from-") {
			patches++
		}
	}
	if patches == 0 {
		t.Fatal("no patch was published")
	}
}

// newVersion gives the row of app on env a new version with other bytes, signed.
func (w *world) newVersion(app, env, version string) {
	w.t.Helper()
	c := w.catalog()
	for i, r := range c.Rows {
		if r.App != app || r.Env != env {
			continue
		}
		old, err := os.ReadFile(r.Path())
		if err != nil {
			w.t.Fatal(err)
		}
		nw := append([]byte(nil), old...)
		copy(nw[100:], []byte("a new release "+version))
		c.Rows[i].Version, c.Rows[i].File = version, "blobs/"+app+"_"+version
		if err := os.WriteFile(filepath.Join(c.Dir(), c.Rows[i].File), nw, 0o644); err != nil {
			w.t.Fatal(err)
		}
		patch, err := packaging.MakePatch(old, nw)
		if err != nil {
			w.t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(c.Dir(), c.Rows[i].File+packaging.PatchSuffix(packaging.SHA256Hex(old))), patch, 0o644); err != nil {
			w.t.Fatal(err)
		}
	}
	if err := c.Save(); err != nil {
		w.t.Fatal(err)
	}
	if err := w.catalog().SignRows(w.priv); err != nil {
		w.t.Fatal(err)
	}
}

func TestPublishOneBinaryChanged(t *testing.T) {
	w := newWorld(t)
	d := w.deployment()
	w.publish(d, false)
	w.newVersion("scoreboard", "prod", "1.0.1")
	p := w.plan(d, false)
	got := names(p)
	want := []string{"upload binary scoreboard_1.0.1", "upload side scoreboard_1.0.1.from-"}
	if len(got) != 4 || got[0] != want[0] || !strings.HasPrefix(got[1], want[1]) || got[2] != "upload side scoreboard_1.0.1.release" || got[3] != "change row scoreboard/prod" {
		t.Fatalf("plan:\n%s", strings.Join(got, "\n"))
	}
	var fields []string
	for _, c := range p.Steps[3].Changes {
		fields = append(fields, c.Field)
	}
	if !slices.Equal(fields, []string{"version", "url", "md5", "sha256", "serial", "release"}) {
		t.Fatalf("changed fields %v", fields)
	}
	if !slices.Equal(p.Extra.Objects, []string{"scoreboard_1.0.0", "scoreboard_1.0.0.release"}) || len(p.Extra.Rows) != 0 {
		t.Fatalf("extra %+v", p.Extra)
	}
	w.publish(d, false)
	safe(t, d, "after the second release")
	p = w.plan(d, false)
	if !p.InSync() || !slices.Equal(p.Extra.Objects, []string{"scoreboard_1.0.0", "scoreboard_1.0.0.release"}) {
		t.Fatalf("after it: steps %v, extra %+v", names(p), p.Extra)
	}
	// --prune removes the old release's objects, and only them.
	p = w.plan(d, true)
	if got := names(p); !slices.Equal(got, []string{"delete object scoreboard_1.0.0", "delete object scoreboard_1.0.0.release"}) {
		t.Fatalf("prune plan %v", got)
	}
	w.publish(d, true)
	safe(t, d, "after pruning")
	if p := w.plan(d, true); !p.InSync() {
		t.Fatalf("after pruning: %v", names(p))
	}
}

// A run stopped after each single step in turn leaves what devices see whole, and the next
// run converges.
func TestPublishStoppedAfterEveryStepConverges(t *testing.T) {
	w := newWorld(t)
	first := w.deployment()
	w.publish(first, false)
	w.newVersion("os_armv8", "prod", "1.2.0")
	c := w.catalog()
	// One row leaves the catalog: pruned after the uploads and the other rows.
	var kept []catalog.Row
	for _, r := range c.Rows {
		if r.App != "modemFW" {
			kept = append(kept, r)
		}
	}
	if err := c.WithRows(kept).Save(); err != nil {
		t.Fatal(err)
	}
	steps := len(w.plan(first, true).Steps)
	if steps < 5 {
		t.Fatalf("only %d steps", steps)
	}
	for stop := 1; stop <= steps; stop++ {
		d := w.deployment()
		// The deployment as the first release left it.
		if _, err := d.apply(context.Background(), mustPlanFrom(t, first, d), 0, nil); err != nil {
			t.Fatal(err)
		}
		safe(t, d, "before")
		_, err := d.apply(context.Background(), w.plan(d, true), stop, nil)
		if !errors.Is(err, errStopped) {
			t.Fatalf("stop after %d: %v", stop, err)
		}
		safe(t, d, fmt.Sprintf("stopped after step %d of %d", stop, steps))
		if rest := w.plan(d, true); len(rest.Steps) != steps-stop {
			t.Fatalf("stopped after %d: %d steps left, want %d: %v", stop, len(rest.Steps), steps-stop, names(rest))
		}
		w.publish(d, true)
		safe(t, d, "run again")
		if p := w.plan(d, true); !p.InSync() {
			t.Fatalf("stopped after %d, run again: not in sync: %v", stop, names(p))
		}
	}
}

// mustPlanFrom is the plan that copies deployment from (objects and rows) into to.
func mustPlanFrom(t *testing.T, from, to *Deployment) *Plan {
	t.Helper()
	ctx := context.Background()
	have, err := from.Read(ctx)
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	want := &Desired{}
	for k, o := range have.Objects {
		body, err := from.Get(ctx, k)
		if err != nil {
			t.Fatal(err)
		}
		path := filepath.Join(dir, k)
		raw := readAll(t, body)
		if err := os.WriteFile(path, raw, 0o644); err != nil {
			t.Fatal(err)
		}
		want.Files = append(want.Files, File{Key: k, Path: path, Size: o.Size, MD5: o.MD5()})
	}
	for _, it := range have.Items {
		it.URL = "s3://" + to.Bucket + "/" + it.Object()
		want.Items = append(want.Items, it)
	}
	cur, err := to.Read(ctx)
	if err != nil {
		t.Fatal(err)
	}
	p, err := MakePlan(want, cur, to.Target, false)
	if err != nil {
		t.Fatal(err)
	}
	return p
}

func readAll(t *testing.T, r io.ReadCloser) []byte {
	t.Helper()
	defer r.Close()
	raw, err := io.ReadAll(r)
	if err != nil {
		t.Fatal(err)
	}
	return raw
}

// Refused before anything is uploaded: new bytes under a version a live row names, and an
// object larger than one PutObject takes.
func TestPublishRefusesBeforeUploading(t *testing.T) {
	w := newWorld(t)
	d := w.deployment()
	w.publish(d, false)
	c := w.catalog()
	var r catalog.Row
	for _, x := range c.Rows {
		if x.App == "modemFW" {
			r = x
		}
	}
	if err := os.WriteFile(r.Path(), []byte("the same version, other bytes"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := w.catalog().SignRows(w.priv); err != nil {
		t.Fatal(err)
	}
	_, err := plan(d, w.catalog(), false)
	if err == nil || !strings.Contains(err.Error(), "modemFW_1.0: the catalog's bytes") || !strings.Contains(err.Error(), "publish them as a new version") {
		t.Fatalf("new bytes under a live version: %v", err)
	}
	have, err := d.Read(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	huge := &Desired{Files: []File{{Key: "os_armv8_9.0.0", Path: "/images/os", Size: MaxObject + 1, MD5: strings.Repeat("0", 32)}}}
	if _, err := MakePlan(huge, have, d.Target, false); err == nil || !strings.Contains(err.Error(), "one PutObject takes at most 5368709120") {
		t.Fatalf("an object over 5 GiB: %v", err)
	}
}

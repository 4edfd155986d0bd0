package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
	"github.com/ota-agent/ota-agent/internal/catalog"
	"github.com/ota-agent/ota-agent/internal/publish"
	"github.com/ota-agent/ota-agent/internal/publish/publishtest"
	"github.com/ota-agent/ota-agent/packaging"
)

// pubWorld is a signed sample catalog and a bucket and table on moto_server.
type pubWorld struct {
	endpoint, dir, cat string
	priv               []byte
}

func newPubWorld(t *testing.T) *pubWorld {
	w := &pubWorld{endpoint: publishtest.Moto(t), dir: t.TempDir()}
	w.cat = filepath.Join(w.dir, "cat")
	var err error
	if w.priv, _, err = packaging.GenerateKey(); err != nil {
		t.Fatal(err)
	}
	if _, err := catalog.WriteSample(w.cat, 4096, 3, w.priv); err != nil {
		t.Fatal(err)
	}
	publishtest.Create(t, w.endpoint, "firmware", "rows")
	return w
}

// publish runs `ota-release publish` against the world's deployment with more flags.
func (w *pubWorld) publish(cat string, more ...string) (string, error) {
	var out bytes.Buffer
	args := append([]string{"publish", "--catalog", cat, "--bucket", "firmware", "--table", "rows", "--region", publishtest.Region, "--endpoint", w.endpoint}, more...)
	err := run(args, &out)
	return out.String(), err
}

// rows is how many rows the table holds.
func (w *pubWorld) rows(t *testing.T) int {
	t.Helper()
	_, db := publishtest.Clients(t, w.endpoint)
	out, err := db.Scan(context.Background(), &dynamodb.ScanInput{TableName: new("rows")})
	if err != nil {
		t.Fatal(err)
	}
	return len(out.Items)
}

func TestPublishCommand(t *testing.T) {
	w := newPubWorld(t)
	out, err := w.publish(w.cat, "--plan")
	if !errors.Is(err, errPending) || !strings.Contains(out, "upload  binary  os_armv8_1.1.0") || !strings.Contains(out, "put     row     os_armv8/prod") {
		t.Fatalf("--plan on an empty deployment: %v\n%s", err, out)
	}
	if n := w.rows(t); n != 0 {
		t.Fatalf("--plan wrote %d rows", n)
	}
	out, err = w.publish(w.cat)
	if err != nil || !strings.Contains(out, "published: ") || !strings.Contains(out, "done 1/") {
		t.Fatalf("publish: %v\n%s", err, out)
	}
	if n := w.rows(t); n != len(catalog.SampleRows) {
		t.Fatalf("%d rows", n)
	}
	out, err = w.publish(w.cat, "--plan")
	if err != nil || !strings.Contains(out, "in sync: nothing to do") {
		t.Fatalf("second --plan: %v\n%s", err, out)
	}
	out, err = w.publish(w.cat, "--plan", "--json")
	var p publish.Plan
	if err != nil || json.Unmarshal([]byte(out), &p) != nil || !p.InSync() || p.Unchanged.Rows != len(catalog.SampleRows) {
		t.Fatalf("--plan --json: %v\n%s", err, out)
	}
	out, err = w.publish(w.cat, "--json")
	var res publish.Result
	if err != nil || json.Unmarshal([]byte(out), &res) != nil || res.Done != 0 || res.Plan == nil {
		t.Fatalf("--json: %v\n%s", err, out)
	}
}

// Bad input: a clear error naming what and where, and nothing a device can see changed.
func TestPublishBadInput(t *testing.T) {
	w := newPubWorld(t)
	if _, err := w.publish(w.cat); err != nil {
		t.Fatal(err)
	}
	unsigned := filepath.Join(w.dir, "unsigned")
	if _, err := catalog.WriteSample(unsigned, 4096, 4, nil); err != nil {
		t.Fatal(err)
	}
	dup := copyCatalog(t, w.cat, filepath.Join(w.dir, "dup"))
	c, err := catalog.Load(dup)
	if err != nil {
		t.Fatal(err)
	}
	two := c.Rows[1]
	two.Version = "1.1.1"
	if err := c.WithRows(append(c.Rows, two)).Save(); err != nil {
		t.Fatal(err)
	}
	missing := copyCatalog(t, w.cat, filepath.Join(w.dir, "missing"))
	os.Remove(filepath.Join(missing, "blobs", "modemFW_1.0"))
	stale := copyCatalog(t, w.cat, filepath.Join(w.dir, "stale"))
	if err := os.WriteFile(filepath.Join(stale, "blobs", "modemFW_1.0"), []byte("other bytes"), 0o644); err != nil {
		t.Fatal(err)
	}
	cases := []struct {
		name string
		cat  string
		args []string
		want string
	}{
		{"missing bucket", w.cat, []string{"--bucket", "nope"}, "bucket nope (listing it): no such bucket at " + w.endpoint + ": create it"},
		{"missing table", w.cat, []string{"--table", "nope"}, "table nope: no such table"},
		{"unsigned over signed", unsigned, nil, "is unsigned, but the deployment's rows are signed"},
		{"two rows for one app and channel", dup, nil, "two rows for app os_armv8 on channel prod (versions 1.1.0 and 1.1.1)"},
		{"file missing", missing, nil, "catalog row modemFW_1.0: open " + filepath.Join(missing, "blobs", "modemFW_1.0") + ": no such file"},
		{"statement not of the bytes", stale, nil, "modemFW_1.0.release is not the statement of row modemFW/prod"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			out, err := w.publish(tc.cat, tc.args...)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("got %v, want %q\n%s", err, tc.want, out)
			}
			if out, err := w.publish(w.cat, "--plan"); err != nil {
				t.Fatalf("the deployment changed: %v\n%s", err, out)
			}
		})
	}
	t.Run("no credentials", func(t *testing.T) {
		publishtest.Credentials(t, "", "")
		_, err := w.publish(w.cat)
		if err == nil || !strings.Contains(err.Error(), "no AWS credentials") || !strings.Contains(err.Error(), "AWS_PROFILE") {
			t.Fatalf("got %v", err)
		}
	})
	t.Run("no region", func(t *testing.T) {
		var out bytes.Buffer
		err := run([]string{"publish", "--catalog", w.cat, "--bucket", "firmware", "--table", "rows", "--endpoint", w.endpoint}, &out)
		if err == nil || !strings.Contains(err.Error(), "no AWS region: pass --region") {
			t.Fatalf("got %v", err)
		}
	})
	t.Run("usage", func(t *testing.T) {
		var out bytes.Buffer
		if err := run([]string{"publish", "--catalog", w.cat}, &out); !errors.Is(err, errUsage) {
			t.Fatalf("got %v", err)
		}
	})
}

func copyCatalog(t *testing.T, from, to string) string {
	t.Helper()
	err := filepath.Walk(from, func(p string, fi os.FileInfo, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(from, p)
		if fi.IsDir() {
			return os.MkdirAll(filepath.Join(to, rel), 0o755)
		}
		raw, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		return os.WriteFile(filepath.Join(to, rel), raw, 0o644)
	})
	if err != nil {
		t.Fatal(err)
	}
	return to
}

// docPolicy is the IAM policy docs/publishing.md gives, for bucket and table.
func docPolicy(t *testing.T, bucket, table string) string {
	t.Helper()
	raw, err := os.ReadFile("../../docs/publishing.md")
	if err != nil {
		t.Fatal(err)
	}
	m := regexp.MustCompile("(?s)<!-- iam-policy -->\n```json\n(.*?)```\n<!-- /iam-policy -->").FindSubmatch(raw)
	if m == nil {
		t.Fatal("docs/publishing.md has no <!-- iam-policy --> block")
	}
	var doc map[string]any
	if err := json.Unmarshal(m[1], &doc); err != nil {
		t.Fatalf("docs/publishing.md's policy: %v", err)
	}
	p := strings.NewReplacer("BUCKET", bucket, "TABLE", table, "REGION", publishtest.Region, "ACCOUNT", "123456789012").Replace(string(m[1]))
	// moto checks DynamoDB actions but not table ARNs (it asks about resource "*").
	return regexp.MustCompile(`"arn:aws:dynamodb:[^"]*"`).ReplaceAllString(p, `"*"`)
}

func TestPublishWithTheDocumentedPolicy(t *testing.T) {
	w := newPubWorld(t)
	policy := docPolicy(t, "firmware", "rows")
	if !strings.Contains(policy, `"arn:aws:s3:::firmware/*"`) {
		t.Fatalf("policy %s", policy)
	}
	var deny map[string]any
	json.Unmarshal([]byte(policy), &deny)
	deny["Statement"] = append(deny["Statement"].([]any), map[string]any{"Effect": "Deny", "Action": "s3:PutObject", "Resource": "arn:aws:s3:::firmware/scoreboard_1.0.0"})
	denied, _ := json.Marshal(deny)
	id, secret := publishtest.User(t, w.endpoint, "publisher", policy)
	id2, secret2 := publishtest.User(t, w.endpoint, "halfpublisher", string(denied))
	publishtest.EnforceIAM(t, w.endpoint)

	publishtest.Credentials(t, id2, secret2)
	out, err := w.publish(w.cat)
	if err == nil || !strings.Contains(err.Error(), "upload s3://firmware/scoreboard_1.0.0: access denied") || !strings.Contains(err.Error(), "run publish again") {
		t.Fatalf("denied one key: %v\n%s", err, out)
	}
	publishtest.Credentials(t, id, secret)
	if n := w.rows(t); n != 0 {
		t.Fatalf("%d rows written after a denied upload", n)
	}
	if out, err := w.publish(w.cat); err != nil {
		t.Fatalf("publish with the documented policy: %v\n%s", err, out)
	}
	// --prune deletes a row and its objects with the same permissions.
	c, err := catalog.Load(w.cat)
	if err != nil {
		t.Fatal(err)
	}
	if err := c.WithRows(c.Rows[1:]).Save(); err != nil {
		t.Fatal(err)
	}
	if out, err := w.publish(w.cat, "--prune"); err != nil || !strings.Contains(out, "delete  row     os_armv8/beta") || !strings.Contains(out, "delete  object  os_armv8_2.0.0") {
		t.Fatalf("prune with the documented policy: %v\n%s", err, out)
	}
	if out, err := w.publish(w.cat, "--plan", "--prune"); err != nil {
		t.Fatalf("after pruning: %v\n%s", err, out)
	}
}

// Package publishtest runs the AWS APIs the publisher talks to on loopback: moto_server (the
// Python `moto` package) on a free port, started by the test that needs it, with the
// deployment's bucket and table made as the reference's CloudFormation stack makes them.
package publishtest

import (
	"bytes"
	"context"
	"encoding/xml"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	awsconfig "github.com/aws/aws-sdk-go-v2/config"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
	dbtypes "github.com/aws/aws-sdk-go-v2/service/dynamodb/types"
	"github.com/aws/aws-sdk-go-v2/service/s3"
)

// Region is the region the tests name (moto answers for any).
const Region = "us-east-1"

// Moto starts moto_server on a free loopback port for the test and returns its endpoint. The
// process environment gets test credentials and no way to an instance role (nothing leaves
// loopback). Without moto_server the test is skipped, saying so.
func Moto(t testing.TB) string {
	t.Helper()
	bin, err := exec.LookPath("moto_server")
	if err != nil {
		t.Skip("SKIPPED: moto_server is not installed (the Python package moto[server] 5.x): the AWS API tests need it")
	}
	Credentials(t, "testing", "testing")
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	port := l.Addr().(*net.TCPAddr).Port
	l.Close()
	var out bytes.Buffer
	cmd := exec.Command(bin, "-H", "127.0.0.1", "-p", fmt.Sprint(port))
	cmd.Stdout, cmd.Stderr = &out, &out
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "AWS_") { // botocore refuses an empty AWS_PROFILE
			cmd.Env = append(cmd.Env, kv)
		}
	}
	if err := cmd.Start(); err != nil {
		t.Fatalf("moto_server: %v", err)
	}
	t.Cleanup(func() {
		cmd.Process.Kill()
		cmd.Wait()
		if t.Failed() {
			t.Logf("moto_server's output:\n%s", tail(out.String(), 4000))
		}
	})
	endpoint := fmt.Sprintf("http://127.0.0.1:%d", port)
	for deadline := time.Now().Add(60 * time.Second); ; time.Sleep(100 * time.Millisecond) {
		resp, err := http.Get(endpoint + "/moto-api/data.json")
		if err == nil {
			resp.Body.Close()
			return endpoint
		}
		if time.Now().After(deadline) {
			t.Fatalf("moto_server did not answer on %s within 60 s: %v\n%s", endpoint, err, out.String())
		}
	}
}

// Credentials sets the SDK's environment to these keys only: no profile, no instance role.
func Credentials(t testing.TB, id, secret string) {
	dir := t.TempDir()
	t.Setenv("AWS_ACCESS_KEY_ID", id)
	t.Setenv("AWS_SECRET_ACCESS_KEY", secret)
	t.Setenv("AWS_SESSION_TOKEN", "")
	t.Setenv("AWS_PROFILE", "")
	t.Setenv("AWS_REGION", "")
	t.Setenv("AWS_DEFAULT_REGION", "")
	t.Setenv("AWS_CONFIG_FILE", filepath.Join(dir, "config"))
	t.Setenv("AWS_SHARED_CREDENTIALS_FILE", filepath.Join(dir, "credentials"))
	t.Setenv("AWS_EC2_METADATA_DISABLED", "true")
	t.Setenv("AWS_CONTAINER_CREDENTIALS_FULL_URI", "")
	t.Setenv("AWS_CONTAINER_CREDENTIALS_RELATIVE_URI", "")
}

// Clients are SDK clients of the moto endpoint, for a test's own setup and inspection.
func Clients(t testing.TB, endpoint string) (*s3.Client, *dynamodb.Client) {
	t.Helper()
	cfg, err := awsconfig.LoadDefaultConfig(context.Background(), awsconfig.WithRegion(Region))
	if err != nil {
		t.Fatal(err)
	}
	s := s3.NewFromConfig(cfg, func(o *s3.Options) {
		o.BaseEndpoint, o.UsePathStyle = aws.String(endpoint), true
	})
	d := dynamodb.NewFromConfig(cfg, func(o *dynamodb.Options) { o.BaseEndpoint = aws.String(endpoint) })
	return s, d
}

// Create makes the bucket and the table (app HASH + env RANGE, on-demand), as the
// reference's stack does.
func Create(t testing.TB, endpoint, bucket, table string) {
	t.Helper()
	ctx := context.Background()
	s, d := Clients(t, endpoint)
	if _, err := s.CreateBucket(ctx, &s3.CreateBucketInput{Bucket: &bucket}); err != nil {
		t.Fatalf("create bucket %s: %v", bucket, err)
	}
	_, err := d.CreateTable(ctx, &dynamodb.CreateTableInput{
		TableName: &table,
		AttributeDefinitions: []dbtypes.AttributeDefinition{
			{AttributeName: aws.String("app"), AttributeType: dbtypes.ScalarAttributeTypeS},
			{AttributeName: aws.String("env"), AttributeType: dbtypes.ScalarAttributeTypeS},
		},
		KeySchema: []dbtypes.KeySchemaElement{
			{AttributeName: aws.String("app"), KeyType: dbtypes.KeyTypeHash},
			{AttributeName: aws.String("env"), KeyType: dbtypes.KeyTypeRange},
		},
		BillingMode: dbtypes.BillingModePayPerRequest,
	})
	if err != nil {
		t.Fatalf("create table %s: %v", table, err)
	}
}

func tail(s string, n int) string {
	if len(s) > n {
		return "…" + s[len(s)-n:]
	}
	return s
}

// User makes an IAM user with the inline policy (JSON) and returns its access key. Call it
// before EnforceIAM: moto takes the setup unauthenticated.
func User(t testing.TB, endpoint, name, policy string) (id, secret string) {
	t.Helper()
	iam(t, endpoint, url.Values{"Action": {"CreateUser"}, "UserName": {name}})
	iam(t, endpoint, url.Values{"Action": {"PutUserPolicy"}, "UserName": {name}, "PolicyName": {"publish"}, "PolicyDocument": {policy}})
	body := iam(t, endpoint, url.Values{"Action": {"CreateAccessKey"}, "UserName": {name}})
	var out struct {
		Key struct {
			ID     string `xml:"AccessKeyId"`
			Secret string `xml:"SecretAccessKey"`
		} `xml:"CreateAccessKeyResult>AccessKey"`
	}
	if err := xml.Unmarshal(body, &out); err != nil || out.Key.ID == "" {
		t.Fatalf("CreateAccessKey: %v\n%s", err, body)
	}
	return out.Key.ID, out.Key.Secret
}

// iam is one call of moto's IAM query API (unsigned: authentication is not enforced yet).
func iam(t testing.TB, endpoint string, v url.Values) []byte {
	t.Helper()
	v.Set("Version", "2010-05-08")
	req, _ := http.NewRequest(http.MethodPost, endpoint+"/", strings.NewReader(v.Encode()))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.Header.Set("Authorization", "AWS4-HMAC-SHA256 Credential=testing/20261205/us-east-1/iam/aws4_request, SignedHeaders=host, Signature=0")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("IAM %s: %s\n%s", v.Get("Action"), resp.Status, body)
	}
	return body
}

// EnforceIAM makes moto check every request's signature and its IAM permissions from now on.
func EnforceIAM(t testing.TB, endpoint string) {
	t.Helper()
	resp, err := http.Post(endpoint+"/moto-api/reset-auth", "text/plain", strings.NewReader("0"))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("reset-auth: %s", resp.Status)
	}
}

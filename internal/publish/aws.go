package publish

import (
	"context"
	"crypto/md5"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"strconv"
	"strings"

	"github.com/aws/aws-sdk-go-v2/aws"
	awsconfig "github.com/aws/aws-sdk-go-v2/config"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
	dbtypes "github.com/aws/aws-sdk-go-v2/service/dynamodb/types"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/aws/smithy-go"
)

// MaxObject is the largest object one PutObject takes: larger needs a multipart upload,
// whose ETag is not the MD5 devices send (protocol.md 1.5).
const MaxObject = 5 << 30

// Target names a deployment: its bucket and table, and how to reach them.
type Target struct {
	Bucket   string
	Table    string
	Region   string // else the SDK's (AWS_REGION, the profile)
	Endpoint string // an S3- and DynamoDB-compatible server: path-style addressing
}

// Deployment is a bucket and a table reached through the AWS SDK (its standard credential
// chain: environment, shared profile, SSO, instance or task role).
type Deployment struct {
	Target
	s3 *s3.Client
	db *dynamodb.Client
}

// Open makes the SDK's clients for t and checks, before anything else, that it has
// credentials and a region.
func Open(ctx context.Context, t Target) (*Deployment, error) {
	var opts []func(*awsconfig.LoadOptions) error
	if t.Region != "" {
		opts = append(opts, awsconfig.WithRegion(t.Region))
	}
	cfg, err := awsconfig.LoadDefaultConfig(ctx, opts...)
	if err != nil {
		return nil, fmt.Errorf("AWS configuration: %w (check AWS_PROFILE, AWS_CONFIG_FILE and AWS_SHARED_CREDENTIALS_FILE)", err)
	}
	if cfg.Region == "" {
		return nil, errors.New("no AWS region: pass --region or set AWS_REGION (or region in the profile)")
	}
	if _, err := cfg.Credentials.Retrieve(ctx); err != nil {
		return nil, fmt.Errorf("no AWS credentials: %v; set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, name a profile with AWS_PROFILE, or run where an instance or task role is attached", err)
	}
	d := &Deployment{Target: t}
	d.s3 = s3.NewFromConfig(cfg, func(o *s3.Options) {
		if t.Endpoint != "" {
			o.BaseEndpoint, o.UsePathStyle = aws.String(t.Endpoint), true
		}
		// One PutObject with Content-MD5 (the object's ETag is then its MD5); no trailing
		// checksums in aws-chunked bodies, which S3-compatible servers handle unevenly.
		o.RequestChecksumCalculation = aws.RequestChecksumCalculationWhenRequired
		o.ResponseChecksumValidation = aws.ResponseChecksumValidationWhenRequired
	})
	d.db = dynamodb.NewFromConfig(cfg, func(o *dynamodb.Options) {
		if t.Endpoint != "" {
			o.BaseEndpoint = aws.String(t.Endpoint)
		}
	})
	return d, nil
}

// CheckTable says whether the table exists with the reference's key schema (app, env). (The
// bucket's listing says whether it exists: no s3:HeadBucket in the policy.)
func (d *Deployment) CheckTable(ctx context.Context) error {
	out, err := d.db.DescribeTable(ctx, &dynamodb.DescribeTableInput{TableName: &d.Table})
	if err != nil {
		return d.explain(err, "table "+d.Table)
	}
	keys := map[string]string{}
	for _, k := range out.Table.KeySchema {
		keys[string(k.KeyType)] = aws.ToString(k.AttributeName)
	}
	if keys["HASH"] != "app" || keys["RANGE"] != "env" {
		return fmt.Errorf("table %s has the key schema %v, not the reference's app (HASH) + env (RANGE): is it the deployment's AppVersionsTable?", d.Table, keys)
	}
	return nil
}

// explain turns an SDK error into one that names what failed and what to do.
func (d *Deployment) explain(err error, what string) error {
	var ae smithy.APIError
	code := ""
	if errors.As(err, &ae) {
		code = ae.ErrorCode()
	}
	var re interface{ HTTPStatusCode() int }
	status := 0
	if errors.As(err, &re) {
		status = re.HTTPStatusCode()
	}
	where := ""
	if d.Endpoint != "" {
		where = " at " + d.Endpoint
	}
	switch {
	case code == "NoSuchBucket":
		return fmt.Errorf("%s: no such bucket%s: create it (the stack's AppBinaries) or correct --bucket", what, where)
	case code == "ResourceNotFoundException":
		return fmt.Errorf("%s: no such table%s: create it (the stack's AppVersionsTable) or correct --table", what, where)
	case code == "AccessDenied" || code == "AccessDeniedException" || code == "UnrecognizedClientException" || status == http.StatusForbidden:
		return fmt.Errorf("%s: access denied (%s): the credentials lack a permission docs/publishing.md lists", what, firstLine(err))
	}
	return fmt.Errorf("%s: %v", what, err)
}

func firstLine(err error) string {
	s, _, _ := strings.Cut(err.Error(), "\n")
	return s
}

// Stored is an object as the bucket lists it.
type Stored struct {
	Size int64
	ETag string // without quotes
}

// MD5 is the object's MD5 when its ETag is one (a single PUT, no SSE-KMS).
func (s Stored) MD5() string {
	if len(s.ETag) == 32 && !strings.Contains(s.ETag, "-") {
		return strings.ToLower(s.ETag)
	}
	return ""
}

// Objects lists the bucket.
func (d *Deployment) Objects(ctx context.Context) (map[string]Stored, error) {
	out := map[string]Stored{}
	p := s3.NewListObjectsV2Paginator(d.s3, &s3.ListObjectsV2Input{Bucket: &d.Bucket})
	for p.HasMorePages() {
		page, err := p.NextPage(ctx)
		if err != nil {
			return nil, d.explain(err, "bucket "+d.Bucket+" (listing it)")
		}
		for _, o := range page.Contents {
			out[aws.ToString(o.Key)] = Stored{Size: aws.ToInt64(o.Size), ETag: strings.Trim(aws.ToString(o.ETag), `"`)}
		}
	}
	return out, nil
}

// Head is one object's size and ETag.
func (d *Deployment) Head(ctx context.Context, key string) (Stored, error) {
	out, err := d.s3.HeadObject(ctx, &s3.HeadObjectInput{Bucket: &d.Bucket, Key: &key})
	if err != nil {
		return Stored{}, d.explain(err, "s3://"+d.Bucket+"/"+key)
	}
	return Stored{Size: aws.ToInt64(out.ContentLength), ETag: strings.Trim(aws.ToString(out.ETag), `"`)}, nil
}

// Put uploads the local file path as key in one PutObject with its Content-MD5, then reads
// the object's size and ETag back: they must be the file's size and MD5.
func (d *Deployment) Put(ctx context.Context, key, path string, size int64, md5hex string) error {
	if size > MaxObject {
		return fmt.Errorf("%s is %d bytes: one PutObject takes at most %d, and a multipart upload's ETag is not the MD5 devices send", key, size, int64(MaxObject))
	}
	f, err := os.Open(path)
	if err != nil {
		return err
	}
	defer f.Close()
	sum, err := hex.DecodeString(md5hex)
	if err != nil || len(sum) != md5.Size {
		return fmt.Errorf("%s: md5 %q is not 32 hex digits", key, md5hex)
	}
	_, err = d.s3.PutObject(ctx, &s3.PutObjectInput{Bucket: &d.Bucket, Key: &key, Body: io.NewSectionReader(f, 0, size),
		ContentLength: aws.Int64(size), ContentMD5: aws.String(base64.StdEncoding.EncodeToString(sum))})
	if err != nil {
		return d.explain(err, "upload s3://"+d.Bucket+"/"+key)
	}
	got, err := d.Head(ctx, key)
	if err != nil {
		return err
	}
	if got.Size != size || got.MD5() != md5hex {
		return fmt.Errorf("s3://%s/%s after its upload: %d bytes, ETag %q; want %d bytes, ETag %s (the MD5 devices send): is the bucket encrypted with SSE-KMS? The reference design needs SSE-S3 or none", d.Bucket, key, got.Size, got.ETag, size, md5hex)
	}
	return nil
}

// Get opens an object.
func (d *Deployment) Get(ctx context.Context, key string) (io.ReadCloser, error) {
	out, err := d.s3.GetObject(ctx, &s3.GetObjectInput{Bucket: &d.Bucket, Key: &key})
	if err != nil {
		return nil, d.explain(err, "s3://"+d.Bucket+"/"+key)
	}
	return out.Body, nil
}

// Delete removes an object.
func (d *Deployment) Delete(ctx context.Context, key string) error {
	if _, err := d.s3.DeleteObject(ctx, &s3.DeleteObjectInput{Bucket: &d.Bucket, Key: &key}); err != nil {
		return d.explain(err, "delete s3://"+d.Bucket+"/"+key)
	}
	return nil
}

// Items scans the table.
func (d *Deployment) Items(ctx context.Context) ([]Item, error) {
	var out []Item
	p := dynamodb.NewScanPaginator(d.db, &dynamodb.ScanInput{TableName: &d.Table, ConsistentRead: aws.Bool(true)})
	for p.HasMorePages() {
		page, err := p.NextPage(ctx)
		if err != nil {
			return nil, d.explain(err, "scan table "+d.Table)
		}
		for _, av := range page.Items {
			it, err := fromAttrs(av)
			if err != nil {
				return nil, fmt.Errorf("table %s: %w", d.Table, err)
			}
			out = append(out, it)
		}
	}
	return out, nil
}

// PutItem writes a row.
func (d *Deployment) PutItem(ctx context.Context, it Item) error {
	if _, err := d.db.PutItem(ctx, &dynamodb.PutItemInput{TableName: &d.Table, Item: toAttrs(it)}); err != nil {
		return d.explain(err, "put row "+it.Key()+" into table "+d.Table)
	}
	return nil
}

// DeleteItem removes a row.
func (d *Deployment) DeleteItem(ctx context.Context, it Item) error {
	key := map[string]dbtypes.AttributeValue{"app": str(it.App), "env": str(it.Env)}
	if _, err := d.db.DeleteItem(ctx, &dynamodb.DeleteItemInput{TableName: &d.Table, Key: key}); err != nil {
		return d.explain(err, "delete row "+it.Key()+" from table "+d.Table)
	}
	return nil
}

func str(s string) dbtypes.AttributeValue { return &dbtypes.AttributeValueMemberS{Value: s} }
func num(n int64) dbtypes.AttributeValue {
	return &dbtypes.AttributeValueMemberN{Value: strconv.FormatInt(n, 10)}
}

// toAttrs is the item as DynamoDB attributes (absent fields left out, as init.py does).
func toAttrs(it Item) map[string]dbtypes.AttributeValue {
	m := map[string]dbtypes.AttributeValue{"app": str(it.App), "env": str(it.Env), "version": str(it.Version), "url": str(it.URL), "md5": str(it.MD5)}
	for k, v := range map[string]string{"ident": it.Ident, "cpuArch": it.CPUArch, "sha256": it.SHA256, "release": it.Release} {
		if v != "" {
			m[k] = str(v)
		}
	}
	for k, v := range map[string]int64{"size": it.Size, "serial": it.Serial} {
		if v != 0 {
			m[k] = num(v)
		}
	}
	if len(it.DeviceAttr) > 0 {
		attrs := map[string]dbtypes.AttributeValue{}
		for n, on := range it.DeviceAttr {
			attrs[n] = &dbtypes.AttributeValueMemberBOOL{Value: on}
		}
		m["deviceAttr"] = &dbtypes.AttributeValueMemberM{Value: attrs}
	}
	return m
}

// fromAttrs reads an item written by publish or by hand (init.py).
func fromAttrs(m map[string]dbtypes.AttributeValue) (Item, error) {
	var it Item
	var bad []string
	s := func(k string) string {
		switch v := m[k].(type) {
		case nil:
		case *dbtypes.AttributeValueMemberS:
			return v.Value
		default:
			bad = append(bad, k+" is not a string")
		}
		return ""
	}
	n := func(k string) int64 {
		switch v := m[k].(type) {
		case nil:
		case *dbtypes.AttributeValueMemberN:
			x, err := strconv.ParseInt(v.Value, 10, 64)
			if err == nil {
				return x
			}
			bad = append(bad, k+" is not an integer")
		default:
			bad = append(bad, k+" is not a number")
		}
		return 0
	}
	it.App, it.Env, it.Version, it.Ident, it.CPUArch = s("app"), s("env"), s("version"), s("ident"), s("cpuArch")
	it.URL, it.MD5, it.SHA256, it.Release = s("url"), s("md5"), s("sha256"), s("release")
	it.Size, it.Serial = n("size"), n("serial")
	if v, ok := m["deviceAttr"].(*dbtypes.AttributeValueMemberM); ok {
		it.DeviceAttr = map[string]bool{}
		for name, av := range v.Value {
			b, ok := av.(*dbtypes.AttributeValueMemberBOOL)
			it.DeviceAttr[name] = ok && b.Value
		}
	} else if m["deviceAttr"] != nil {
		bad = append(bad, "deviceAttr is not a map")
	}
	if len(bad) > 0 {
		return it, fmt.Errorf("row %s: %s", it.Key(), strings.Join(bad, ", "))
	}
	return it, nil
}

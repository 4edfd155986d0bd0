package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"time"

	"github.com/ota-agent/ota-agent/internal/publish"
	"github.com/ota-agent/ota-agent/testserver"
	"github.com/spf13/pflag"
)

// awsFlags are serve's flags for a deployment in S3 + DynamoDB (docs/publishing.md).
type awsFlags struct {
	t       publish.Target
	refresh time.Duration
	dir     string
}

func (a *awsFlags) register(fs *pflag.FlagSet) {
	fs.StringVar(&a.t.Bucket, "aws-bucket", "", "serve the deployment in this S3 bucket (with --aws-table) instead of --catalog")
	fs.StringVar(&a.t.Table, "aws-table", "", "the deployment's DynamoDB table of rows")
	fs.StringVar(&a.t.Region, "aws-region", "", "AWS region (default: AWS_REGION, or the profile's)")
	fs.StringVar(&a.t.Endpoint, "aws-endpoint", "", "an S3- and DynamoDB-compatible endpoint (moto_server), path-style")
	fs.DurationVar(&a.refresh, "aws-refresh", time.Second, "how often the table and the bucket are read again")
	fs.StringVar(&a.dir, "aws-dir", "", "where the copy of the deployment is kept (default: a temporary directory)")
}

func (a *awsFlags) set() bool { return a.t.Bucket != "" || a.t.Table != "" }

// mirror copies the deployment into a catalog directory once; cleanup removes a temporary one.
func (a *awsFlags) mirror(ctx context.Context, stdout io.Writer) (m *publish.Mirror, dir string, cleanup func(), err error) {
	if a.t.Bucket == "" || a.t.Table == "" {
		return nil, "", nil, fmt.Errorf("%w: serve: --aws-bucket and --aws-table go together", errUsage)
	}
	cleanup = func() {}
	dir = a.dir
	if dir == "" {
		if dir, err = os.MkdirTemp("", "ota-testserver-aws-"); err != nil {
			return nil, "", nil, err
		}
		cleanup = func() { os.RemoveAll(dir) }
	}
	d, err := publish.Open(ctx, a.t)
	if err == nil {
		err = d.CheckTable(ctx)
	}
	if err != nil {
		cleanup()
		return nil, "", nil, err
	}
	m = &publish.Mirror{D: d, Dir: dir}
	if _, skipped, err := m.Sync(ctx); err != nil {
		cleanup()
		return nil, "", nil, err
	} else {
		warnSkipped(skipped)
	}
	fmt.Fprintf(stdout, "serving   bucket %s and table %s (read again every %s; a copy in %s)\n", a.t.Bucket, a.t.Table, a.refresh, dir)
	return m, dir, cleanup, nil
}

func warnSkipped(skipped []string) {
	for _, k := range skipped {
		fmt.Fprintf(os.Stderr, "ota-testserver: row %s names an object the bucket lacks: left out\n", k)
	}
}

// follow reads the deployment again every refresh until ctx ends: a changed table or bucket
// reloads the catalog; the edge keeps what it cached until it expires, as CloudFront does.
func (a *awsFlags) follow(ctx context.Context, m *publish.Mirror, srv *testserver.Server) {
	t := time.NewTicker(a.refresh)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		changed, skipped, err := m.Sync(ctx)
		switch {
		case err != nil && ctx.Err() == nil:
			fmt.Fprintln(os.Stderr, "ota-testserver: reading the deployment failed, the old catalog stays:", err)
		case changed:
			warnSkipped(skipped)
			if err := srv.Reload(); err != nil {
				fmt.Fprintln(os.Stderr, "ota-testserver: reload failed, the old catalog stays:", err)
			}
		}
	}
}
